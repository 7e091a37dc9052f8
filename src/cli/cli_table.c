/*
 * cli/cli_table.c - human output: aligned tables (kubectl style: upper-case
 * headers, columns three spaces apart, no borders) and the short spans of
 * time that fill AGE and EXPIRES columns.
 *
 * Everything shown here may come from the server, which may show what a
 * repository said: cells are sanitised so that no newline breaks a table and
 * no escape sequence reaches the terminal.
 */
#include "cli/cli_int.h"

#include <string.h>

#include "util/time.h"
#include "util/xmalloc.h"

#define COLUMN_GAP 3 /* spaces between columns, as kubectl does */

char *
cli__sanitize(const char *s)
{
    char *out = xstrdup(s ? s : "");
    char *w = out;

    for (const unsigned char *r = (const unsigned char *)out; *r; r++) {
        if (*r < 0x20 || *r == 0x7f) {
            *w++ = ' ';
        } else if (*r == 0xc2 && r[1] >= 0x80 && r[1] <= 0x9f) {
            *w++ = ' '; /* U+0080..U+009F: C1 controls, CSI among them */
            r++;
        } else {
            *w++ = (char)*r;
        }
    }
    *w = '\0';
    return out;
}

size_t
cli__display_width(const char *s)
{
    size_t n = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p & 0xc0) != 0x80) /* count lead bytes, skip continuation bytes */
            n++;
    }
    return n;
}

/* ------------------------------------------------------------- tables */

void
cli__table_init(struct cli_table *t, size_t n_cols, const char *const *headers)
{
    memset(t, 0, sizeof(*t));
    t->n_cols = n_cols;
    t->headers = headers;
    t->indent = "";
    t->widths = xcalloc(n_cols, sizeof(*t->widths));
}

static void
forget_rows(struct cli_table *t)
{
    for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->n_rows = 0;
}

void
cli__table_release(struct cli_table *t)
{
    forget_rows(t);
    free(t->widths);
    t->widths = NULL;
}

void
cli__table_add(struct cli_table *t, const char *const *cells)
{
    t->cells = xrealloc(t->cells, (t->n_rows + 1) * t->n_cols * sizeof(*t->cells));
    for (size_t c = 0; c < t->n_cols; c++) {
        const char *cell = cells[c] && cells[c][0] ? cells[c] : "-";

        t->cells[t->n_rows * t->n_cols + c] = cli__sanitize(cell);
    }
    t->n_rows++;
}

void
cli__table_measure(struct cli_table *t)
{
    for (size_t c = 0; c < t->n_cols; c++) {
        size_t w = t->headers && !t->header_done ? cli__display_width(t->headers[c]) : 0;

        if (w > t->widths[c])
            t->widths[c] = w;
        for (size_t r = 0; r < t->n_rows; r++) {
            w = cli__display_width(t->cells[r * t->n_cols + c]);
            if (w > t->widths[c])
                t->widths[c] = w;
        }
    }
}

static void
print_line(const struct cli_table *t, const char *const *cells, FILE *out)
{
    fputs(t->indent, out);
    for (size_t c = 0; c < t->n_cols; c++) {
        fputs(cells[c], out);
        if (c + 1 < t->n_cols) {
            size_t pad = t->widths[c] - cli__display_width(cells[c]) + COLUMN_GAP;

            fprintf(out, "%*s", (int)pad, "");
        }
    }
    fputc('\n', out);
}

void
cli__table_print(struct cli_table *t, FILE *out)
{
    cli__table_measure(t);
    if (t->headers && !t->header_done) {
        print_line(t, t->headers, out);
        t->header_done = true;
    }
    for (size_t r = 0; r < t->n_rows; r++)
        print_line(t, (const char *const *)&t->cells[r * t->n_cols], out);
    forget_rows(t);
}

/* ------------------------------------------------------------- spans of time */

void
cli__format_span(int64_t ms, char *out, size_t out_size)
{
    int64_t s;

    if (ms < 0)
        ms = 0;
    s = (ms + 500) / 1000;
    /* duration_format() shows two units at most and cuts the rest: round to
     * the smallest unit shown, so 2h59m59.6s reads "3h", not "2h59m". */
    if (s >= 86400)
        s = (s + 1800) / 3600 * 3600;
    else if (s >= 60)
        s = (s + 30) / 60 * 60;
    duration_format(s, out, out_size);
}

void
cli__format_age(int64_t now_ms, int64_t then_ms, char *out, size_t out_size)
{
    if (then_ms <= 0)
        snprintf(out, out_size, "-");
    else
        cli__format_span(now_ms - then_ms, out, out_size);
}

void
cli__format_expires(int64_t now_ms, int64_t expires_ms, char *out, size_t out_size)
{
    int64_t left_ms = expires_ms - now_ms;

    if (expires_ms <= 0)
        snprintf(out, out_size, "-");
    else if (left_ms <= 0)
        snprintf(out, out_size, "expired");
    else
        cli__format_span(left_ms < 1000 ? 1000 : left_ms, out, out_size);
}
