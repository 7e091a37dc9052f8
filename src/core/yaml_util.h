/*
 * core/yaml_util.h - YAML text -> a small tree of our own that keeps a
 * 1-based position on every node, collections included, for the two
 * readers of YAML that people write: the template (core/spec.c) and the
 * `auth:` and `notify:` sections of the server's config
 * (core/auth_config.c). libfyaml 0.7 has no public call for the position
 * of a document node, only of events, so the tree is built from its event
 * parser.
 *
 * Input that libfyaml 0.7.12 mishandles is refused with a message of our
 * own before it can do harm: bytes that are not UTF-8 (it loops forever on
 * some), explicit keys (it crashes after some malformed ones) and two ''
 * escapes in a row in a single-quoted string (it reads them wrong). Anchors
 * and aliases, NUL characters in strings and more than one document are
 * refused too. A mapping keeps every key in file order, repeated ones
 * included: each reader refuses those with its own message.
 *
 * Pure functions of their arguments; any thread.
 */
#ifndef EPH_CORE_YAML_UTIL_H
#define EPH_CORE_YAML_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

/* The deepest max_depth a reader may ask for: the size of the parser's stack. */
#define YAML_MAX_DEPTH 64

/* How much of a value a message quotes; the rest becomes "...". */
#define YAML_SHOW_MAX 60
/* The size of a buffer for yaml_show(): the text, "..." and the NUL. */
#define YAML_SHOW_BUF (YAML_SHOW_MAX + 4)

enum yaml_kind {
    YAML_SCALAR,
    YAML_MAPPING,
    YAML_SEQUENCE,
};

struct yaml_node {
    enum yaml_kind kind;
    int line;                /* 1-based position of the node's first character */
    int col;                 /* counted in characters, as libfyaml and editors count them */
    char *text;              /* scalar: unescaped, NUL-terminated, no NUL inside */
    size_t len;              /* scalar: strlen(text) */
    bool plain;              /* scalar: unquoted, so it may mean null, true or false */
    struct yaml_node **kids; /* mapping: key, value, key, value ...; sequence: items */
    size_t n_kids;
    size_t cap_kids;
};

struct yaml_parse_opts {
    const char *file; /* the name messages start with: "ephemera.yaml:3:5: ..." */
    int max_depth;    /* collections nested deeper are refused; 1 to YAML_MAX_DEPTH */
    /*
     * What the file is, for two messages: "template" gives "more than one
     * YAML document, expected a single template" and "unsupported alias
     * '*a', templates cannot use anchors and aliases"; NULL gives "more
     * than one YAML document" and "anchors and aliases are not supported".
     */
    const char *doc_noun;
};

/*
 * Parses len bytes of YAML into *root_out: NULL for an empty document,
 * else a tree the caller frees with yaml_node_free(). Returns 0, or
 * EPH_EPARSE (not YAML, or YAML libfyaml cannot read safely), EPH_EINVAL
 * (YAML the readers do not take: aliases, explicit keys, NUL characters,
 * nesting deeper than opts->max_depth) or -ENOMEM, with a message in *err
 * that starts with "file:line:col: ". The caller checks the size first.
 */
int yaml_parse_tree(const char *text, size_t len, const struct yaml_parse_opts *opts,
                    struct yaml_node **root_out, struct eph_err *err);

/*
 * Frees n and everything below it; a scalar's text is wiped first, as it
 * may have been a secret. yaml_node_free(NULL) does nothing.
 */
void yaml_node_free(struct yaml_node *n);

/* True for a plain scalar that means null: empty, ~, null, Null or NULL. */
bool yaml_is_null(const struct yaml_node *n);

/*
 * The YAML 1.2 core schema booleans (true, True, TRUE and the same of
 * false), only as plain scalars: a quoted "true" is a string. Returns
 * whether n is one, with its value in *out.
 */
bool yaml_bool(const struct yaml_node *n, bool *out);

/* "a string", "a mapping" or "a list", for messages such as "must be a
 * mapping, not a list". */
const char *yaml_kind_name(const struct yaml_node *n);

/*
 * Text as a message quotes it: at most YAML_SHOW_MAX bytes, and at most
 * size - 4, cut at a character boundary and followed by "...", control
 * characters as '?'. Writes buf (size bytes, at least 4) and returns it.
 * Never used on secrets.
 */
const char *yaml_show_n(const char *text, size_t len, char *buf, size_t size);

/* yaml_show_n() of a NUL-terminated text into a buffer of YAML_SHOW_BUF bytes. */
const char *yaml_show(const char *text, char *buf);

/*
 * Sets *err to "file:line:col: " and the formatted message, and returns
 * code: the body of the readers' fail() helpers.
 */
int yaml_verr_at(struct eph_err *err, const char *file, int line, int col, int code,
                 const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

#endif
