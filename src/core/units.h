/*
 * core/units.h - sizes ("512Mi") and CPU amounts ("0.5", "250m") as people
 * write them in settings and templates, and back.
 *
 * Shared by the server settings (limit_memory_max, limit_cpu_max) and the
 * template's defaults.limits, so both read the same notation, which is
 * Kubernetes' (a user's manifests and our templates sit side by side).
 * Durations are util/time.h's duration_parse(). Pure functions, any thread.
 */
#ifndef EPH_CORE_UNITS_H
#define EPH_CORE_UNITS_H

#include <stddef.h>
#include <stdint.h>

#define UNITS_MAX_BYTES (1LL << 60)    /* 1 EiB: anything above is a typo */
#define UNITS_MAX_CPU_MILLIS 100000000 /* 100,000 cores */

/*
 * Bytes from "1048576", "512Mi", "1G", "1.5Gi": a number (a decimal
 * fraction allowed, the result rounded down to whole bytes) and an optional
 * suffix, k/K M G T P E (powers of 1000) or Ki Mi Gi Ti Pi Ei (powers of
 * 1024). No sign, no spaces, nothing else. Returns 0 and *out (0 allowed),
 * or EPH_EINVAL for anything else or anything above UNITS_MAX_BYTES.
 */
int parse_size_bytes(const char *s, int64_t *out);

/*
 * CPU thousandths of a core from "1", "1.0", "0.5", "2.25" (cores, at most
 * three decimals) or "250m" (millicores). Returns 0 and *out (0 allowed), or
 * EPH_EINVAL for anything else, for a finer amount ("0.0005") or above
 * UNITS_MAX_CPU_MILLIS.
 */
int parse_cpu_millis(const char *s, int64_t *out);

/*
 * The shortest exact text parse_size_bytes() reads back: "512Mi", "1Gi",
 * "1500" (a power of 1024 where one divides, else plain bytes).
 */
void format_size_bytes(int64_t bytes, char *out, size_t out_size);

/* Cores as parse_cpu_millis() reads back: "1", "0.5", "2.25", "0.001". */
void format_cpu_millis(int64_t millis, char *out, size_t out_size);

#endif
