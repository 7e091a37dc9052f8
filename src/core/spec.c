/*
 * core/spec.c - the environment template: ephemera.yaml (version 1) -> struct spec.
 *
 * Parsing goes in three steps, and the first error stops it:
 *  1. libfyaml's event parser turns the bytes into a small tree of our own
 *     (struct ynode) that keeps a 1-based position on every node, collections
 *     included: libfyaml 0.7 has no public call for the position of a
 *     document node, only for events and tokens.
 *  2. The tree is checked section by section and copied into struct spec;
 *     scalars that may hold ${...} references and depends_on entries are
 *     remembered with their nodes.
 *  3. Once every name is known: depends_on, references, dependency cycles.
 *
 * The second half works on a parsed spec: dependency order, params given at
 * creation, ${...} expansion, and the environment variables of a service.
 */
#include "core/spec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libfyaml.h>

#include "core/schedule.h"
#include "core/tz.h"
#include "core/units.h"
#include "util/buf.h"
#include "util/fs.h"
#include "util/time.h"
#include "util/xmalloc.h"

/* Deeper YAML is a mistake in a template (the deepest part of a valid one,
 * live_update.on, is 5 levels down); the limit also bounds every recursion
 * over the tree. */
#define YAML_MAX_DEPTH 64

/* How much of a value a message quotes; the rest becomes "...". */
#define SHOW_MAX 60

/* ------------------------------------------------------------- the tree */

enum ynode_kind {
    YNODE_SCALAR,
    YNODE_MAPPING,
    YNODE_SEQUENCE,
};

struct ynode {
    enum ynode_kind kind;
    int line; /* 1-based position of the node's first character */
    int col;
    char *text;          /* scalar: unescaped text, NUL-terminated, no NUL inside */
    size_t len;          /* scalar: strlen(text) */
    bool plain;          /* scalar: unquoted, so it may mean null, true, false */
    struct ynode **kids; /* mapping: key, value, key, value...; sequence: items */
    size_t n_kids;
    size_t cap_kids;
};

static void
ynode_free(struct ynode *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n_kids; i++)
        ynode_free(n->kids[i]);
    free(n->kids);
    free(n->text);
    free(n);
}

static void
ynode_add(struct ynode *parent, struct ynode *kid)
{
    if (parent->n_kids == parent->cap_kids) {
        parent->cap_kids = parent->cap_kids ? parent->cap_kids * 2 : 4;
        parent->kids = xrealloc(parent->kids, parent->cap_kids * sizeof(*parent->kids));
    }
    parent->kids[parent->n_kids++] = kid;
}

static size_t
n_pairs(const struct ynode *map)
{
    return map->n_kids / 2;
}

static const struct ynode *
pair_key(const struct ynode *map, size_t i)
{
    return map->kids[2 * i];
}

static const struct ynode *
pair_value(const struct ynode *map, size_t i)
{
    return map->kids[2 * i + 1];
}

/* ------------------------------------------------------------- context */

struct pctx {
    const char *file; /* the name used in messages */
    const char *yaml; /* the bytes being parsed, yaml_len of them */
    size_t yaml_len;
    struct eph_err *err;
    struct spec *s; /* being filled; spec_free() copes with a partial one */
    /* depends_on entries, parallel to each service's depends_on, for positions. */
    const struct ynode **dep_nodes[SPEC_MAX_SERVICES];
    /* Scalars that may hold ${...}, in file order, checked once all names are known. */
    const struct ynode **refs;
    size_t n_refs;
    size_t cap_refs;
};

static int fail_at(struct pctx *c, int line, int col, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int
fail_at(struct pctx *c, int line, int col, int code, const char *fmt, ...)
{
    char msg[EPH_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return eph_err_set(c->err, code, "%s:%d:%d: %s", c->file, line, col, msg);
}

static int fail(struct pctx *c, const struct ynode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fails with EPH_EINVAL at the position of node n. */
static int
fail(struct pctx *c, const struct ynode *n, const char *fmt, ...)
{
    char msg[EPH_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return eph_err_set(c->err, EPH_EINVAL, "%s:%d:%d: %s", c->file, n->line, n->col, msg);
}

/*
 * Text as a message quotes it: at most SHOW_MAX bytes (cut at a character
 * boundary, then "..."), control characters as '?'. Returns buf.
 */
static const char *
show_n(const char *text, size_t len, char *buf, size_t size)
{
    size_t max = size - 4; /* room for "..." and the NUL */
    size_t n = len;
    bool cut = false;

    if (max > SHOW_MAX)
        max = SHOW_MAX;
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
            n--; /* do not split a UTF-8 sequence */
        cut = true;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];

        buf[i] = (ch < 0x20 || ch == 0x7F) ? '?' : (char)ch;
    }
    if (cut) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

#define SHOW_BUF (SHOW_MAX + 4)

static const char *
show(const char *text, char *buf)
{
    return show_n(text, strlen(text), buf, SHOW_BUF);
}

static const char *
kind_name(const struct ynode *n)
{
    switch (n->kind) {
    case YNODE_MAPPING: return "a mapping";
    case YNODE_SEQUENCE: return "a list";
    case YNODE_SCALAR: break;
    }
    return "a string";
}

/* --------------------------------------------------- step 1: YAML -> tree */

/* libfyaml's diagnostics would go to stderr; they are collected instead. */
static void
on_diag_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
}

/* Line and column of the byte at `off`, 1-based; columns count characters, as libfyaml's do. */
static void
position_of(const char *text, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

/*
 * The offset of the first byte that is not part of well-formed UTF-8 (no
 * overlong forms, no surrogates, nothing above U+10FFFF) or is NUL, or len
 * when there is none. YAML text is UTF-8 (we take no UTF-16), and libfyaml
 * 0.7.12 loops forever on some invalid bytes ("%a\x8e") and lets others
 * through into strings.
 */
static size_t
first_bad_byte(const unsigned char *p, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char b = p[i];
        size_t need;
        unsigned lo = 0x80, hi = 0xBF; /* bounds of the second byte */

        if (b == 0)
            return i;
        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0)
                lo = 0xA0; /* overlong */
            else if (b == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0)
                lo = 0x90; /* overlong */
            else if (b == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return i;
        }
        if (len - i <= need || p[i + 1] < lo || p[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return i;
        }
        i += need + 1;
    }
    return len;
}

static bool
is_blank_or_end(const char *p, size_t len, size_t i)
{
    return i >= len || p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r';
}

/*
 * The offset of the first explicit key ("? " where a line's node starts:
 * after indentation, "- " entries or "--- "), or len when there is none.
 * A template has no use for them, and libfyaml 0.7.12 crashes in
 * fy_parser_destroy() after some malformed ones ("? a:\t: "), so they are
 * refused before it sees them. Conservative: "? " opening a line of a
 * block scalar is refused too.
 */
static size_t
find_explicit_key(const char *p, size_t len)
{
    size_t i = 0;

    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        i = 3; /* byte order mark */
    while (i < len) {
        for (;;) {
            while (i < len && (p[i] == ' ' || p[i] == '\t'))
                i++;
            if (i < len && p[i] == '-' && is_blank_or_end(p, len, i + 1))
                i++;
            else if (len - i >= 3 && memcmp(p + i, "---", 3) == 0 && is_blank_or_end(p, len, i + 3))
                i += 3;
            else
                break;
        }
        if (i < len && p[i] == '?' && is_blank_or_end(p, len, i + 1))
            return i;
        while (i < len && p[i] != '\n' && p[i] != '\r')
            i++;
        i++;
    }
    return len;
}

/* The first error libfyaml collected, as our message. */
static int
yaml_error(struct pctx *c, struct fy_diag *diag)
{
    void *it = NULL;

    for (;;) {
        struct fy_diag_error *e = fy_diag_errors_iterate(diag, &it);

        if (e == NULL)
            break;
        if (e->type != FYET_ERROR)
            continue;
        /* libfyaml's collected positions are already 1-based. */
        return fail_at(c, e->line > 0 ? e->line : 1, e->column > 0 ? e->column : 1, EPH_EPARSE,
                       "invalid YAML: %s", e->msg ? e->msg : "syntax error");
    }
    return fail_at(c, 1, 1, EPH_EPARSE, "invalid YAML");
}

/*
 * libfyaml 0.7.12 misreads two '' escapes in a row in a single-quoted string
 * ('x''''y' comes out as x'''y, cut to a wrong length, and leaks). True when
 * the single-quoted string whose text starts at byte `pos` has them.
 */
static bool
has_escapes_in_a_row(const char *yaml, size_t len, size_t pos)
{
    bool after_escape = false;

    while (pos < len) {
        if (yaml[pos] != '\'') {
            after_escape = false;
            pos++;
        } else if (pos + 1 < len && yaml[pos + 1] == '\'') {
            if (after_escape)
                return true;
            after_escape = true;
            pos += 2;
        } else {
            return false; /* the closing quote */
        }
    }
    return false;
}

/* One event into the tree; `stack` holds the open collections. */
static int
tree_add_event(struct pctx *c, struct fy_event *ev, const struct fy_mark *m, int line, int col,
               struct ynode **stack, size_t *depth, struct ynode **root, int *docs)
{
    struct ynode *n;
    const char *text;
    size_t len = 0;
    char buf[SHOW_BUF];

    switch (ev->type) {
    case FYET_DOCUMENT_START:
        if (++*docs > 1)
            return fail_at(c, line, col, EPH_EPARSE,
                           "more than one YAML document, expected a single template");
        return 0;
    case FYET_ALIAS:
        text = fy_token_get_text(ev->alias.anchor, &len);
        return fail_at(c, line, col, EPH_EINVAL,
                       "unsupported alias '*%s', templates cannot use anchors and aliases",
                       show_n(text ? text : "", text ? len : 0, buf, sizeof(buf)));
    case FYET_MAPPING_END:
    case FYET_SEQUENCE_END:
        if (*depth == 0)
            return fail_at(c, line, col, EPH_EPARSE, "invalid YAML");
        n = stack[--*depth];
        if (n->kind == YNODE_MAPPING && n->n_kids % 2 != 0)
            return fail_at(c, line, col, EPH_EPARSE, "invalid YAML: key without value");
        return 0;
    case FYET_SCALAR:
    case FYET_MAPPING_START:
    case FYET_SEQUENCE_START: break;
    default: return 0;
    }

    if (ev->type == FYET_SCALAR && m != NULL &&
        fy_token_scalar_style(ev->scalar.value) == FYSS_SINGLE_QUOTED && m->input_pos > 0 &&
        m->input_pos <= c->yaml_len && c->yaml[m->input_pos - 1] == '\'' &&
        has_escapes_in_a_row(c->yaml, c->yaml_len, m->input_pos))
        return fail_at(c, line, col, EPH_EPARSE,
                       "cannot read two '' escapes in a row in a single-quoted string, "
                       "use a double-quoted string");

    n = xcalloc(1, sizeof(*n));
    n->line = line;
    n->col = col;
    if (ev->type == FYET_SCALAR) {
        text = fy_token_get_text(ev->scalar.value, &len);
        if (text == NULL) {
            /* Never silently "": the library failed to decode it. */
            ynode_free(n);
            return fail_at(c, line, col, EPH_EPARSE, "invalid YAML: cannot read this string");
        }
        n->kind = YNODE_SCALAR;
        n->plain = fy_token_scalar_style(ev->scalar.value) == FYSS_PLAIN;
        n->text = xstrndup(text, len);
        n->len = len;
        if (memchr(text, '\0', len) != NULL) {
            ynode_free(n);
            return fail_at(c, line, col, EPH_EINVAL, "NUL character in string");
        }
    } else {
        n->kind = ev->type == FYET_MAPPING_START ? YNODE_MAPPING : YNODE_SEQUENCE;
        if (*depth == YAML_MAX_DEPTH) {
            ynode_free(n);
            return fail_at(c, line, col, EPH_EINVAL, "nested deeper than %d levels",
                           YAML_MAX_DEPTH);
        }
    }
    if (*depth > 0) {
        ynode_add(stack[*depth - 1], n);
    } else if (*root == NULL) {
        *root = n;
    } else {
        ynode_free(n); /* a parser bug: two roots in one document */
        return fail_at(c, line, col, EPH_EPARSE, "invalid YAML");
    }
    if (n->kind != YNODE_SCALAR)
        stack[(*depth)++] = n;
    return 0;
}

/*
 * The 1-based column a message should point at for the node of event ev.
 * libfyaml marks a quoted scalar at its first character inside the quotes,
 * an alias after its '*', and a block scalar (| or >) at the start of its
 * first line; messages point at the quote, the '*' and the first character
 * of the text, as editors do. The bytes are checked, so a libfyaml that
 * marks the token itself changes nothing.
 */
static int
node_column(struct fy_event *ev, const struct fy_mark *m, const char *yaml, size_t len)
{
    int col = m->column + 1;
    char before;

    if (m->input_pos > len || (ev->type != FYET_ALIAS && ev->type != FYET_SCALAR))
        return col;
    before = m->input_pos > 0 && m->column > 0 ? yaml[m->input_pos - 1] : '\n';
    if (ev->type == FYET_ALIAS)
        return before == '*' ? col - 1 : col;
    switch (fy_token_scalar_style(ev->scalar.value)) {
    case FYSS_SINGLE_QUOTED: return before == '\'' ? col - 1 : col;
    case FYSS_DOUBLE_QUOTED: return before == '"' ? col - 1 : col;
    case FYSS_LITERAL:
    case FYSS_FOLDED:
        for (size_t i = m->input_pos; m->column == 0 && i < len && yaml[i] == ' '; i++)
            col++;
        return col;
    default: return col;
    }
}

/* Parses the YAML into *root_out (NULL for an empty document). */
static int
tree_build(struct pctx *c, const char *yaml, size_t len, struct ynode **root_out)
{
    struct fy_diag_cfg dcfg;
    struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET};
    struct fy_diag *diag = NULL;
    struct fy_parser *parser = NULL;
    struct fy_event *ev;
    struct ynode *stack[YAML_MAX_DEPTH];
    struct ynode *root = NULL;
    size_t depth = 0;
    int docs = 0, line = 1, col = 1;
    int rc = 0;

    *root_out = NULL;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = on_diag_output;
    dcfg.colorize = false;
    diag = fy_diag_create(&dcfg);
    if (diag == NULL)
        return eph_err_set(c->err, -ENOMEM, "%s: cannot create the YAML parser", c->file);
    fy_diag_set_collect_errors(diag, true);
    pcfg.diag = diag;
    parser = fy_parser_create(&pcfg);
    if (parser == NULL || fy_parser_set_string(parser, yaml, len) != 0) {
        rc = eph_err_set(c->err, -ENOMEM, "%s: cannot create the YAML parser", c->file);
        goto out;
    }
    while (rc == 0) {
        const struct fy_mark *m;

        ev = fy_parser_parse(parser);
        if (ev == NULL)
            break; /* the end, or an error: see below */
        m = fy_event_start_mark(ev);

        /* Events without a mark (an empty value) take the previous position,
         * which is their key's. */
        if (m != NULL) {
            line = m->line + 1;
            col = node_column(ev, m, yaml, len);
        }
        rc = tree_add_event(c, ev, m, line, col, stack, &depth, &root, &docs);
        fy_parser_event_free(parser, ev);
    }
    if (rc == 0 && (fy_parser_get_stream_error(parser) || fy_diag_got_error(diag)))
        rc = yaml_error(c, diag);
    if (rc == 0 && depth != 0)
        rc = fail_at(c, line, col, EPH_EPARSE, "invalid YAML: unexpected end of input");
    if (rc == 0) {
        *root_out = root;
        root = NULL;
    }
out:
    ynode_free(root);
    fy_parser_destroy(parser);
    fy_diag_destroy(diag); /* unlike fy_diag_unref(), frees the collected errors */
    return rc;
}

struct key_at {
    const struct ynode *key;
    size_t index; /* position in the mapping */
};

static int
cmp_key_at(const void *a, const void *b)
{
    const struct key_at *x = a, *y = b;
    int c;

    if (x->key->len != y->key->len)
        return x->key->len < y->key->len ? -1 : 1;
    c = memcmp(x->key->text, y->key->text, x->key->len);
    if (c != 0)
        return c;
    return x->index < y->index ? -1 : (x->index > y->index);
}

static bool
same_text(const struct ynode *a, const struct ynode *b)
{
    return a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
}

static bool
before(const struct ynode *a, const struct ynode *b)
{
    return a->line < b->line || (a->line == b->line && a->col < b->col);
}

/*
 * The duplicate key that comes first in the file, in n or below, into *best
 * if it comes before *best. Sorting keeps a mapping with thousands of keys
 * (which the size limit allows) from costing seconds.
 */
static void
find_duplicate(const struct ynode *n, const struct ynode **best)
{
    struct key_at *keys;
    size_t count = 0;

    if (n->kind == YNODE_SCALAR)
        return;
    for (size_t i = 0; i < n->n_kids; i++)
        find_duplicate(n->kids[i], best);
    if (n->kind != YNODE_MAPPING || n_pairs(n) < 2)
        return;
    keys = xcalloc(n_pairs(n), sizeof(*keys));
    for (size_t i = 0; i < n_pairs(n); i++) {
        if (pair_key(n, i)->kind == YNODE_SCALAR) {
            keys[count].key = pair_key(n, i);
            keys[count].index = i;
            count++;
        }
    }
    qsort(keys, count, sizeof(*keys), cmp_key_at);
    /* Within a run of equal keys the second is the first repetition. */
    for (size_t i = 1; i < count; i++) {
        if (same_text(keys[i].key, keys[i - 1].key) &&
            (i < 2 || !same_text(keys[i - 1].key, keys[i - 2].key)) &&
            (*best == NULL || before(keys[i].key, *best)))
            *best = keys[i].key;
    }
    free(keys);
}

/* ------------------------------------------------- step 2: tree -> spec */

static bool
is_null(const struct ynode *n)
{
    return n->kind == YNODE_SCALAR && n->plain &&
           (n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
            strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0);
}

/* YAML 1.2 core schema booleans; quoted "true" is a string. */
static bool
get_bool(const struct ynode *n, bool *out)
{
    if (n->kind != YNODE_SCALAR || !n->plain)
        return false;
    if (strcmp(n->text, "true") == 0 || strcmp(n->text, "True") == 0 ||
        strcmp(n->text, "TRUE") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(n->text, "false") == 0 || strcmp(n->text, "False") == 0 ||
        strcmp(n->text, "FALSE") == 0) {
        *out = false;
        return true;
    }
    return false;
}

static bool
is_lower_or_digit(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static bool
is_dns_label(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > 30 || s[0] == '-' || s[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_lower_or_digit(s[i]) && s[i] != '-')
            return false;
    }
    return true;
}

static bool
is_param_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (!is_lower_or_digit(*s) && *s != '_')
            return false;
    }
    return true;
}

static bool
is_shell_name(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (s++; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    }
    return true;
}

/* A mapping key must be a string (YAML allows lists and mappings as keys). */
static int
check_key(struct pctx *c, const struct ynode *k)
{
    if (k->kind != YNODE_SCALAR)
        return fail(c, k, "a key must be a string, not %s", kind_name(k));
    return 0;
}

static int
unknown_key(struct pctx *c, const struct ynode *k, const char *where, const char *expected)
{
    char b[SHOW_BUF];

    return fail(c, k, "unknown key '%s' in %s, expected one of: %s", show(k->text, b), where,
                expected);
}

/* A non-empty string value of key `what`, copied into *out. */
static int
get_string(struct pctx *c, const struct ynode *v, const char *what, char **out)
{
    if (v->kind != YNODE_SCALAR)
        return fail(c, v, "'%s' must be a string, not %s", what, kind_name(v));
    if (is_null(v) || v->len == 0)
        return fail(c, v, "'%s' must not be empty", what);
    free(*out);
    *out = xstrdup(v->text);
    return 0;
}

static void
remember_refs(struct pctx *c, const struct ynode *n)
{
    if (c->n_refs == c->cap_refs) {
        c->cap_refs = c->cap_refs ? c->cap_refs * 2 : 16;
        c->refs = xrealloc(c->refs, c->cap_refs * sizeof(*c->refs));
    }
    c->refs[c->n_refs++] = n;
}

/* A duration in seconds, greater than zero. */
static int
get_duration(struct pctx *c, const struct ynode *v, const char *what, int64_t *out_s)
{
    struct eph_err derr = {0};
    int64_t sec;

    if (v->kind != YNODE_SCALAR || is_null(v))
        return fail(c, v, "'%s' must be a duration, e.g. 30m, 2h or 1h30m", what);
    if (duration_parse(v->text, &sec, &derr) < 0)
        return fail(c, v, "%s", derr.msg);
    if (sec <= 0)
        return fail(c, v, "'%s' must be greater than zero", what);
    *out_s = sec;
    return 0;
}

/* "a, b, c" into buf (cut short if it does not fit). */
static void
join_allowed(const struct spec_param *p, char *buf, size_t size)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < p->n_allowed && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", p->allowed[i]);

        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static bool
param_allows(const struct spec_param *p, const char *value)
{
    if (p->n_allowed == 0)
        return true;
    for (size_t i = 0; i < p->n_allowed; i++) {
        if (strcmp(p->allowed[i], value) == 0)
            return true;
    }
    return false;
}

static int
parse_param(struct pctx *c, const struct ynode *key, const struct ynode *v, struct spec_param *p)
{
    const struct ynode *def = NULL;
    char b[SHOW_BUF];
    int rc;

    if (!is_param_name(key->text))
        return fail(c, key, "invalid param name '%s', expected lower-case letters, digits and '_'",
                    show(key->text, b));
    if (is_null(v))
        return 0; /* "name:" alone: required, any value */
    if (v->kind != YNODE_MAPPING)
        return fail(c, v, "param '%s' must be a mapping, e.g. { default: a, allowed: [a, b] }",
                    p->name);
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct ynode *k = pair_key(v, i), *val = pair_value(v, i);

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(k->text, "default") == 0) {
            if (val->kind != YNODE_SCALAR)
                return fail(c, val, "'default' of param '%s' must be a string, not %s", p->name,
                            kind_name(val));
            if (is_null(val))
                return fail(c, val,
                            "'default' of param '%s' is empty, write \"\" for an empty value",
                            p->name);
            p->default_value = xstrdup(val->text);
            def = val;
        } else if (strcmp(k->text, "allowed") == 0) {
            if (val->kind != YNODE_SEQUENCE)
                return fail(c, val, "'allowed' of param '%s' must be a list of strings", p->name);
            p->allowed = xcalloc(val->n_kids ? val->n_kids : 1, sizeof(*p->allowed));
            for (size_t j = 0; j < val->n_kids; j++) {
                const struct ynode *item = val->kids[j];

                if (item->kind != YNODE_SCALAR || is_null(item))
                    return fail(c, item, "'allowed' of param '%s' must be a list of strings",
                                p->name);
                p->allowed[p->n_allowed++] = xstrdup(item->text);
            }
        } else {
            char where[64];

            snprintf(where, sizeof(where), "param '%s'", p->name);
            return unknown_key(c, k, where, "default, allowed");
        }
    }
    if (def != NULL && !param_allows(p, p->default_value)) {
        char list[EPH_ERR_MSG_MAX];

        join_allowed(p, list, sizeof(list));
        return fail(c, def, "default '%s' of param '%s' must be one of: %s",
                    show(p->default_value, b), p->name, list);
    }
    return 0;
}

static int
parse_params(struct pctx *c, const struct ynode *v)
{
    struct spec *s = c->s;
    int rc;

    if (is_null(v))
        return 0;
    if (v->kind != YNODE_MAPPING)
        return fail(c, v, "'params' must be a mapping");
    if (n_pairs(v) > SPEC_MAX_PARAMS)
        return fail(c, pair_key(v, SPEC_MAX_PARAMS), "too many params, at most %d",
                    SPEC_MAX_PARAMS);
    s->params = xcalloc(n_pairs(v) ? n_pairs(v) : 1, sizeof(*s->params));
    for (size_t i = 0; i < n_pairs(v); i++) {
        struct spec_param *p = &s->params[s->n_params];

        rc = check_key(c, pair_key(v, i));
        if (rc < 0)
            return rc;
        p->name = xstrdup(pair_key(v, i)->text);
        s->n_params++;
        rc = parse_param(c, pair_key(v, i), pair_value(v, i), p);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* defaults.schedule: { awake: "Mon-Fri 08:00-20:00", timezone: Europe/Madrid,
 * wake_outside_hours: false } */
static int
parse_schedule(struct pctx *c, const struct ynode *v)
{
    const struct ynode *awake = NULL, *zone = NULL;
    struct eph_err serr = {0};
    struct schedule *sched = NULL;
    struct tz *tz = NULL;
    bool on;
    int rc = 0;

    if (is_null(v))
        return 0;
    if (v->kind != YNODE_MAPPING)
        return fail(c, v,
                    "'schedule' must be a mapping, e.g. { awake: \"Mon-Fri 08:00-20:00\", "
                    "timezone: Europe/Madrid }");
    for (size_t i = 0; i < n_pairs(v) && rc == 0; i++) {
        const struct ynode *k = pair_key(v, i), *val = pair_value(v, i);

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(k->text, "awake") == 0) {
            awake = val;
            rc = get_string(c, val, "awake", &c->s->default_schedule_awake);
        } else if (strcmp(k->text, "timezone") == 0) {
            zone = val;
            rc = get_string(c, val, "timezone", &c->s->default_schedule_tz);
        } else if (strcmp(k->text, "wake_outside_hours") == 0) {
            if (!get_bool(val, &on))
                rc = fail(c, val, "'wake_outside_hours' must be true or false");
            else
                c->s->default_wake_outside_hours = on ? 1 : 0;
        } else {
            rc = unknown_key(c, k, "'schedule'", "awake, timezone, wake_outside_hours");
        }
    }
    if (rc < 0)
        return rc;
    if (zone != NULL && awake == NULL)
        return fail(c, zone,
                    "'timezone' needs 'awake' in 'schedule', e.g. "
                    "awake: \"Mon-Fri 08:00-20:00\"");
    if (zone != NULL) {
        rc = tz_load(c->s->default_schedule_tz, &tz, &serr);
        if (rc < 0)
            return fail(c, zone, "%s", serr.msg);
    }
    if (awake != NULL) {
        rc = schedule_new(c->s->default_schedule_awake, tz, &sched, &serr); /* takes tz */
        schedule_free(sched);
        if (rc < 0)
            return fail(c, awake, "%s", serr.msg);
    } else {
        tz_free(tz);
    }
    return 0;
}

/* defaults.limits: { memory: 512Mi, cpu: 1.0, pids: 512 } */
static int
parse_limits(struct pctx *c, const struct ynode *v)
{
    enum { PIDS_MAX = 4194304 }; /* the kernel's largest pid_max */
    struct spec *s = c->s;
    char b[SHOW_BUF];

    if (is_null(v))
        return 0;
    if (v->kind != YNODE_MAPPING)
        return fail(c, v,
                    "'limits' must be a mapping, e.g. { memory: 512Mi, cpu: 1.0, pids: 512 }");
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct ynode *k = pair_key(v, i), *val = pair_value(v, i);
        const char *text = val->kind == YNODE_SCALAR && !is_null(val) ? val->text : NULL;
        int rc = check_key(c, k);

        if (rc < 0)
            return rc;
        if (strcmp(k->text, "memory") == 0) {
            if (text == NULL)
                return fail(c, val, "'memory' must be a size such as 512Mi or 2Gi");
            if (parse_size_bytes(text, &s->default_limit_memory_bytes) < 0)
                return fail(c, val, "'memory' must be a size such as 512Mi or 2Gi, got '%s'",
                            show(text, b));
            if (s->default_limit_memory_bytes == 0)
                return fail(c, val, "'memory' must be greater than zero");
        } else if (strcmp(k->text, "cpu") == 0) {
            if (text == NULL)
                return fail(c, val, "'cpu' must be a number of cores such as 1.0, 0.5 or 250m");
            if (parse_cpu_millis(text, &s->default_limit_cpu_millis) < 0)
                return fail(c, val,
                            "'cpu' must be a number of cores such as 1.0, 0.5 or 250m, got '%s'",
                            show(text, b));
            if (s->default_limit_cpu_millis == 0)
                return fail(c, val, "'cpu' must be greater than zero");
        } else if (strcmp(k->text, "pids") == 0) {
            char *end = NULL;
            long long n = 0;

            if (text != NULL && text[0] >= '0' && text[0] <= '9') {
                errno = 0;
                n = strtoll(text, &end, 10);
            }
            if (end == NULL || *end != '\0' || errno != 0 || n < 1 || n > PIDS_MAX)
                return fail(c, val, "'pids' must be a whole number from 1 to %d", PIDS_MAX);
            s->default_limit_pids = n;
        } else {
            return unknown_key(c, k, "'limits'", "memory, cpu, pids");
        }
    }
    return 0;
}

static int
parse_defaults(struct pctx *c, const struct ynode *v)
{
    int rc;

    if (is_null(v))
        return 0;
    if (v->kind != YNODE_MAPPING)
        return fail(c, v, "'defaults' must be a mapping");
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct ynode *k = pair_key(v, i), *val = pair_value(v, i);

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(k->text, "ttl") == 0) {
            rc = get_duration(c, val, "ttl", &c->s->default_ttl_s);
        } else if (strcmp(k->text, "sleep_after") == 0) {
            if (val->kind == YNODE_SCALAR && strcmp(val->text, "never") == 0)
                c->s->default_sleep_after_s = -1;
            else
                rc = get_duration(c, val, "sleep_after", &c->s->default_sleep_after_s);
        } else if (strcmp(k->text, "schedule") == 0) {
            rc = parse_schedule(c, val);
        } else if (strcmp(k->text, "limits") == 0) {
            rc = parse_limits(c, val);
        } else {
            rc = unknown_key(c, k, "'defaults'", "ttl, sleep_after, schedule, limits");
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* "http://HOST:PORT" with an optional trailing '/'; only the prefix once ${...} is in it. */
static int
check_upstream(struct pctx *c, const struct ynode *v)
{
    const char *t = v->text, *auth, *end, *colon;
    char b[SHOW_BUF];
    size_t port_len;
    long port;

    if (strncmp(t, "http://", 7) != 0)
        return fail(c, v, "'upstream' must start with http://, got '%s'", show(t, b));
    if (strstr(t, "${") != NULL)
        return 0; /* HOST or PORT comes from a reference: checked when expanded */
    auth = t + 7;
    end = strchr(auth, '/');
    if (end == NULL)
        end = auth + strlen(auth);
    colon = NULL;
    for (const char *p = auth; p < end; p++) {
        if (*p == ':')
            colon = p;
    }
    if (colon == NULL || colon == auth || (*end == '/' && end[1] != '\0'))
        goto bad;
    if (auth[0] == '[') {
        /* [IPv6]:PORT */
        if (colon[-1] != ']' || colon - auth < 3)
            goto bad;
        for (const char *p = auth + 1; p < colon - 1; p++) {
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                  (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.'))
                goto bad;
        }
    } else {
        for (const char *p = auth; p < colon; p++) {
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                  (*p >= 'A' && *p <= 'Z') || *p == '.' || *p == '-'))
                goto bad;
        }
    }
    port_len = (size_t)(end - colon - 1);
    if (port_len == 0 || port_len > 5)
        goto bad;
    port = 0;
    for (const char *p = colon + 1; p < end; p++) {
        if (*p < '0' || *p > '9')
            goto bad;
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535)
        goto bad;
    return 0;
bad:
    return fail(c, v, "'upstream' must look like http://HOST:PORT, got '%s'", show(t, b));
}

/* Relative, and no ".." component: a service stays inside its checkout. */
static int
check_dir(struct pctx *c, const struct ynode *v)
{
    const char *p = v->text;
    char b[SHOW_BUF];

    if (p[0] == '/')
        goto bad;
    while (*p) {
        size_t n = strcspn(p, "/");

        if (n == 2 && p[0] == '.' && p[1] == '.')
            goto bad;
        p += n;
        if (*p == '/')
            p++;
    }
    return 0;
bad:
    return fail(c, v, "'dir' must be a relative path inside the checkout, got '%s'",
                show(v->text, b));
}

static int
parse_env(struct pctx *c, const struct ynode *v, struct spec_service *svc)
{
    char b[SHOW_BUF];
    int rc;

    if (is_null(v))
        return 0;
    if (v->kind != YNODE_MAPPING)
        return fail(c, v, "'env' must be a mapping");
    svc->env = xcalloc(n_pairs(v) ? n_pairs(v) : 1, sizeof(*svc->env));
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct ynode *k = pair_key(v, i), *val = pair_value(v, i);
        struct spec_kv *kv = &svc->env[svc->n_env];

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (!is_shell_name(k->text))
            return fail(c, k,
                        "invalid env name '%s', expected letters, digits and '_', "
                        "not starting with a digit",
                        show(k->text, b));
        if (val->kind != YNODE_SCALAR)
            return fail(c, val, "value of env '%s' must be a string, not %s", k->text,
                        kind_name(val));
        kv->key = xstrdup(k->text);
        kv->value = xstrdup(is_null(val) ? "" : val->text);
        svc->n_env++;
        remember_refs(c, val);
    }
    return 0;
}

static int
parse_depends_on(struct pctx *c, const struct ynode *v, struct spec_service *svc, size_t idx)
{
    if (is_null(v))
        return 0;
    if (v->kind != YNODE_SEQUENCE)
        return fail(c, v, "'depends_on' must be a list of service names");
    /* More entries than services can only hold a repetition or a typo. */
    if (v->n_kids > SPEC_MAX_SERVICES)
        return fail(c, v->kids[SPEC_MAX_SERVICES], "'depends_on' lists more than %d services",
                    SPEC_MAX_SERVICES);
    svc->depends_on = xcalloc(v->n_kids ? v->n_kids : 1, sizeof(*svc->depends_on));
    c->dep_nodes[idx] = xcalloc(v->n_kids ? v->n_kids : 1, sizeof(*c->dep_nodes[idx]));
    for (size_t i = 0; i < v->n_kids; i++) {
        const struct ynode *item = v->kids[i];

        if (item->kind != YNODE_SCALAR || is_null(item))
            return fail(c, item, "'depends_on' must be a list of service names");
        c->dep_nodes[idx][svc->n_depends_on] = item;
        svc->depends_on[svc->n_depends_on++] = xstrdup(item->text);
    }
    return 0;
}

static int
parse_health(struct pctx *c, const struct ynode *v, struct spec_service *svc)
{
    char b[SHOW_BUF];
    int kinds = 0;
    int rc;

    if (is_null(v))
        return 0;
    if (v->kind != YNODE_MAPPING)
        return fail(c, v, "'health' must be a mapping, e.g. { http: /healthz } or { tcp: true }");
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct ynode *k = pair_key(v, i), *val = pair_value(v, i);
        int64_t sec;
        bool on;

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(k->text, "http") == 0) {
            rc = get_string(c, val, "http", &svc->health_path);
            if (rc < 0)
                return rc;
            if (svc->health_path[0] != '/')
                return fail(c, val, "'http' must be a path starting with '/', got '%s'",
                            show(val->text, b));
            svc->health_kind = SPEC_HEALTH_HTTP;
            remember_refs(c, val);
            kinds++;
        } else if (strcmp(k->text, "tcp") == 0) {
            if (!get_bool(val, &on) || !on)
                return fail(c, val, "'tcp' must be true");
            svc->health_kind = SPEC_HEALTH_TCP;
            kinds++;
        } else if (strcmp(k->text, "timeout") == 0) {
            rc = get_duration(c, val, "timeout", &sec);
            if (rc < 0)
                return rc;
            svc->health_timeout_ms = sec * 1000;
        } else {
            return unknown_key(c, k, "'health'", "http, tcp, timeout");
        }
    }
    if (kinds != 1)
        return fail(c, v, "'health' needs exactly one of 'http' or 'tcp'");
    return 0;
}

/* Accepted and checked for shape only: the local driver does not use it yet. */
static int
parse_live_update(struct pctx *c, const struct ynode *v)
{
    int rc;

    if (is_null(v))
        return 0;
    if (v->kind != YNODE_SEQUENCE)
        return fail(c, v, "'live_update' must be a list of rules");
    for (size_t i = 0; i < v->n_kids; i++) {
        const struct ynode *rule = v->kids[i];

        if (rule->kind != YNODE_MAPPING)
            return fail(c, rule, "a 'live_update' rule must be a mapping, not %s", kind_name(rule));
        for (size_t j = 0; j < n_pairs(rule); j++) {
            const struct ynode *k = pair_key(rule, j);

            rc = check_key(c, k);
            if (rc < 0)
                return rc;
            if (strcmp(k->text, "on") != 0 && strcmp(k->text, "run") != 0 &&
                strcmp(k->text, "restart") != 0 && strcmp(k->text, "sync") != 0)
                return unknown_key(c, k, "'live_update'", "on, run, restart, sync");
        }
    }
    return 0;
}

static int
parse_service(struct pctx *c, const struct ynode *key, const struct ynode *v, size_t idx)
{
    struct spec_service *svc = &c->s->services[idx];
    const struct ynode *run_k = NULL, *upstream_k = NULL, *local_k = NULL;
    int rc = 0;

    svc->health_timeout_ms = SPEC_DEFAULT_HEALTH_TIMEOUT_MS;
    svc->expose = true;
    if (is_null(v))
        return fail(c, key, "service '%s' needs 'run' or 'upstream'", svc->name);
    if (v->kind != YNODE_MAPPING)
        return fail(c, v, "service '%s' must be a mapping", svc->name);
    for (size_t i = 0; i < n_pairs(v) && rc == 0; i++) {
        const struct ynode *k = pair_key(v, i), *val = pair_value(v, i);
        const char *name = k->text;

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(name, "run") == 0 || strcmp(name, "upstream") == 0) {
            bool is_run = strcmp(name, "run") == 0;

            if ((is_run ? upstream_k : run_k) != NULL)
                return fail(c, k, "service '%s' has both 'run' and 'upstream', expected one",
                            svc->name);
            if (is_run) {
                run_k = k;
                rc = get_string(c, val, "run", &svc->run);
            } else {
                upstream_k = k;
                rc = get_string(c, val, "upstream", &svc->upstream);
                if (rc == 0)
                    rc = check_upstream(c, val);
            }
            if (rc == 0)
                remember_refs(c, val);
        } else if (strcmp(name, "dir") == 0) {
            rc = get_string(c, val, "dir", &svc->dir);
            if (rc == 0)
                rc = check_dir(c, val);
        } else if (strcmp(name, "setup") == 0) {
            rc = get_string(c, val, "setup", &svc->setup);
            if (rc == 0)
                remember_refs(c, val);
        } else if (strcmp(name, "env") == 0) {
            rc = parse_env(c, val, svc);
        } else if (strcmp(name, "depends_on") == 0) {
            rc = parse_depends_on(c, val, svc, idx);
        } else if (strcmp(name, "health") == 0) {
            rc = parse_health(c, val, svc);
        } else if (strcmp(name, "expose") == 0) {
            if (!get_bool(val, &svc->expose))
                rc = fail(c, val, "'expose' must be true or false");
        } else if (strcmp(name, "live_update") == 0) {
            rc = parse_live_update(c, val);
        } else {
            char where[64];

            snprintf(where, sizeof(where), "service '%s'", svc->name);
            rc = unknown_key(c, k, where,
                             "run, upstream, dir, setup, env, depends_on, health, expose, "
                             "live_update");
        }
        /* What only makes sense for a process we start. */
        if (local_k == NULL && (strcmp(name, "dir") == 0 || strcmp(name, "setup") == 0 ||
                                strcmp(name, "env") == 0 || strcmp(name, "live_update") == 0))
            local_k = k;
    }
    if (rc < 0)
        return rc;
    if (run_k == NULL && upstream_k == NULL)
        return fail(c, key, "service '%s' needs 'run' or 'upstream'", svc->name);
    if (upstream_k != NULL && local_k != NULL)
        return fail(c, local_k, "'%s' cannot be used with 'upstream', which starts nothing",
                    local_k->text);
    return 0;
}

static int
parse_services(struct pctx *c, const struct ynode *v)
{
    struct spec *s = c->s;
    char b[SHOW_BUF];
    int rc;

    if (!is_null(v) && v->kind != YNODE_MAPPING)
        return fail(c, v, "'services' must be a mapping");
    if (is_null(v) || n_pairs(v) == 0)
        return fail(c, v, "'services' is empty, expected at least one service");
    if (n_pairs(v) > SPEC_MAX_SERVICES)
        return fail(c, pair_key(v, SPEC_MAX_SERVICES), "too many services, at most %d",
                    SPEC_MAX_SERVICES);
    s->services = xcalloc(n_pairs(v), sizeof(*s->services));
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct ynode *k = pair_key(v, i);

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (!is_dns_label(k->text))
            return fail(c, k,
                        "invalid service name '%s', expected at most 30 lower-case letters, "
                        "digits and '-', not starting or ending with '-'",
                        show(k->text, b));
        /* ${params.x} and ${env.name} would be ambiguous. */
        if (strcmp(k->text, "params") == 0 || strcmp(k->text, "env") == 0)
            return fail(c, k, "service name '%s' is reserved", k->text);
        s->services[i].name = xstrdup(k->text);
        s->n_services++;
        rc = parse_service(c, k, pair_value(v, i), i);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int
parse_version(struct pctx *c, const struct ynode *root)
{
    const struct ynode *v = NULL;
    char b[SHOW_BUF];
    bool numeric = true;

    for (size_t i = 0; i < n_pairs(root) && v == NULL; i++) {
        const struct ynode *k = pair_key(root, i);

        if (k->kind == YNODE_SCALAR && strcmp(k->text, "version") == 0)
            v = pair_value(root, i);
    }
    if (v == NULL)
        return fail(c, root, "missing 'version', expected 'version: 1'");
    if (v->kind != YNODE_SCALAR || is_null(v))
        return fail(c, v, "'version' must be a number, expected 'version: 1'");
    if (strcmp(v->text, "1") == 0)
        return 0;
    for (const char *p = v->text; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || *p == '.'))
            numeric = false;
    }
    if (numeric && v->len <= 10)
        return fail(c, v, "unsupported version %s, expected 1", v->text);
    return fail(c, v, "unsupported version '%s', expected 1", show(v->text, b));
}

/* ------------------------------------------------------------ references */

/*
 * One ${scope.name} reference of ours inside a string. A ${...} whose part
 * before the first '.' could not be a name (${HOST:-a.b}) or that has no '.'
 * at all (${PORT}) belongs to the shell and is left alone.
 */
struct ref {
    size_t start;      /* offset of "${" */
    size_t end;        /* offset just past "}" */
    const char *scope; /* service name, "params" or "env" */
    size_t scope_len;
    const char *name; /* attribute, or param name */
    size_t name_len;
};

static bool
is_scope_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
}

/* The first "${" in [p, end), or NULL. */
static const char *
find_open(const char *p, const char *end)
{
    while (p < end) {
        const char *dollar = memchr(p, '$', (size_t)(end - p));

        if (dollar == NULL || dollar + 1 >= end)
            return NULL;
        if (dollar[1] == '{')
            return dollar;
        p = dollar + 1;
    }
    return NULL;
}

/*
 * Finds the next reference of ours in text (len bytes) at or after *pos.
 * Returns 1 and fills *r (and moves *pos past it), 0 when there is none, or
 * -1 for a "${" that no '}' closes (r->start says where). Linear, so that
 * 256 KiB of "${${${...}" costs nothing: the '}' and '.' found for one "${"
 * serve the following ones until they are passed, and bounded memchr()
 * replaces strstr(), which sanitizers make cost a strlen() per call.
 */
static int
ref_next(const char *text, size_t len, size_t *pos, struct ref *r)
{
    const char *p = text + *pos, *end = text + len, *close = NULL, *dot = NULL;
    bool dot_known = false;

    for (;;) {
        const char *open = find_open(p, end), *inner, *q;

        if (open == NULL)
            return 0;
        inner = open + 2;
        if (close == NULL || close < inner) {
            close = memchr(inner, '}', (size_t)(end - inner));
            if (close == NULL) {
                r->start = (size_t)(open - text);
                return -1;
            }
        }
        if (!dot_known || (dot != NULL && dot < inner)) {
            /* May lie past close: then there is none inside. */
            dot = memchr(inner, '.', (size_t)(end - inner));
            dot_known = true;
        }
        /* Stops at the next '$' at the latest, so this is linear too. */
        q = inner;
        while (dot != NULL && q < dot && is_scope_char(*q))
            q++;
        if (dot != NULL && dot < close && dot > inner && q == dot) {
            r->start = (size_t)(open - text);
            r->end = (size_t)(close + 1 - text);
            r->scope = inner;
            r->scope_len = (size_t)(dot - inner);
            r->name = dot + 1;
            r->name_len = (size_t)(close - dot - 1);
            *pos = r->end;
            return 1;
        }
        p = inner; /* the shell's: look inside it for ours */
    }
}

enum ref_kind {
    REF_HOST,
    REF_PORT,
    REF_URL,
    REF_PARAM,
    REF_ENV_NAME,
};

static bool
span_is(const char *p, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(p, word, len) == 0;
}

/* What reference r names: *kind and the service or param *index. */
static int
ref_lookup(const struct spec *s, const char *text, const struct ref *r, enum ref_kind *kind,
           size_t *index, struct eph_err *err)
{
    char whole[SHOW_BUF], part[SHOW_BUF];

    show_n(text + r->start, r->end - r->start, whole, sizeof(whole));
    show_n(r->name, r->name_len, part, sizeof(part));
    if (span_is(r->scope, r->scope_len, "params")) {
        for (size_t i = 0; i < s->n_params; i++) {
            if (span_is(r->name, r->name_len, s->params[i].name)) {
                *kind = REF_PARAM;
                *index = i;
                return 0;
            }
        }
        return eph_err_set(err, EPH_EINVAL, "unknown param '%s' in '%s'", part, whole);
    }
    if (span_is(r->scope, r->scope_len, "env")) {
        if (!span_is(r->name, r->name_len, "name"))
            return eph_err_set(err, EPH_EINVAL, "unknown attribute '%s' in '%s', expected name",
                               part, whole);
        *kind = REF_ENV_NAME;
        *index = 0;
        return 0;
    }
    for (size_t i = 0; i < s->n_services; i++) {
        if (!span_is(r->scope, r->scope_len, s->services[i].name))
            continue;
        if (span_is(r->name, r->name_len, "host"))
            *kind = REF_HOST;
        else if (span_is(r->name, r->name_len, "port"))
            *kind = REF_PORT;
        else if (span_is(r->name, r->name_len, "url"))
            *kind = REF_URL;
        else
            return eph_err_set(err, EPH_EINVAL,
                               "unknown attribute '%s' in '%s', expected host, port or url", part,
                               whole);
        *index = i;
        return 0;
    }
    show_n(r->scope, r->scope_len, part, sizeof(part));
    return eph_err_set(err, EPH_EINVAL, "unknown service '%s' in '%s'", part, whole);
}

/* ------------------------------------------------- step 3: cross checks */

static int
check_refs(struct pctx *c, const struct ynode *n)
{
    struct eph_err rerr = {0};
    struct ref r;
    size_t pos = 0, index;
    enum ref_kind kind;
    int found;

    for (;;) {
        found = ref_next(n->text, n->len, &pos, &r);
        if (found == 0)
            break;
        if (found < 0)
            return fail(c, n, "unterminated '${', expected '}'");
        if (ref_lookup(c->s, n->text, &r, &kind, &index, &rerr) < 0)
            return fail(c, n, "%s", rerr.msg);
    }
    return 0;
}

static int
check_depends_on(struct pctx *c)
{
    const struct spec *s = c->s;
    char b[SHOW_BUF];

    for (size_t i = 0; i < s->n_services; i++) {
        const struct spec_service *svc = &s->services[i];

        for (size_t j = 0; j < svc->n_depends_on; j++) {
            const char *dep = svc->depends_on[j];
            const struct ynode *n = c->dep_nodes[i][j];
            int k = spec_service_index(s, dep);

            if (k < 0)
                return fail(c, n, "unknown service '%s' in depends_on", show(dep, b));
            if ((size_t)k == i)
                return fail(c, n, "service '%s' depends on itself", dep);
            for (size_t m = 0; m < j; m++) {
                if (strcmp(svc->depends_on[m], dep) == 0)
                    return fail(c, n, "service '%s' is listed twice in depends_on", dep);
            }
        }
    }
    return 0;
}

/*
 * Kahn's algorithm, always taking the first ready service in file order.
 * Fills order[] and returns how many services it placed: fewer than
 * n_services means the rest sit on a cycle or wait for one. Unknown names
 * in depends_on (only in a spec not made by the parser) are ignored.
 */
static size_t
topo_order(const struct spec *s, size_t *order, bool *placed)
{
    size_t waiting[SPEC_MAX_SERVICES]; /* dependencies not placed yet */
    int *dep_idx[SPEC_MAX_SERVICES];   /* depends_on as indexes, -1: unknown */
    size_t n = 0;

    EPH_ASSERT(s->n_services <= SPEC_MAX_SERVICES);
    for (size_t i = 0; i < s->n_services; i++) {
        const struct spec_service *svc = &s->services[i];

        placed[i] = false;
        waiting[i] = 0;
        dep_idx[i] = xcalloc(svc->n_depends_on ? svc->n_depends_on : 1, sizeof(int));
        for (size_t j = 0; j < svc->n_depends_on; j++) {
            dep_idx[i][j] = spec_service_index(s, svc->depends_on[j]);
            if (dep_idx[i][j] >= 0)
                waiting[i]++;
        }
    }
    while (n < s->n_services) {
        size_t next = 0;

        while (next < s->n_services && (placed[next] || waiting[next] > 0))
            next++;
        if (next == s->n_services)
            break;
        placed[next] = true;
        order[n++] = next;
        for (size_t i = 0; i < s->n_services; i++) {
            for (size_t j = 0; j < s->services[i].n_depends_on; j++) {
                if (dep_idx[i][j] == (int)next)
                    waiting[i]--;
            }
        }
    }
    for (size_t i = 0; i < s->n_services; i++)
        free(dep_idx[i]);
    return n;
}

/* The first unplaced dependency of service i (there is one when i is unplaced). */
static size_t
unplaced_dep(const struct spec *s, const bool *placed, size_t i, size_t *which)
{
    for (size_t j = 0; j < s->services[i].n_depends_on; j++) {
        int d = spec_service_index(s, s->services[i].depends_on[j]);

        if (d >= 0 && !placed[d]) {
            *which = j;
            return (size_t)d;
        }
    }
    EPH_ASSERT(0);
    return 0;
}

static int
check_cycles(struct pctx *c)
{
    const struct spec *s = c->s;
    size_t order[SPEC_MAX_SERVICES], path[SPEC_MAX_SERVICES + 1];
    bool placed[SPEC_MAX_SERVICES], on_path[SPEC_MAX_SERVICES] = {false};
    size_t n_path = 0, start = 0, first, which = 0, at, u;
    char msg[EPH_ERR_MSG_MAX];
    size_t used;

    if (topo_order(s, order, placed) == s->n_services)
        return 0;
    /* Walk unplaced dependencies from the first unplaced service until a
     * service repeats: from there on the path is a cycle. */
    u = 0;
    while (placed[u])
        u++;
    while (!on_path[u]) {
        on_path[u] = true;
        path[n_path++] = u;
        u = unplaced_dep(s, placed, u, &which);
    }
    while (path[start] != u)
        start++;
    /* Name it from the service that comes first in the file. */
    first = start;
    for (size_t i = start; i < n_path; i++) {
        if (path[i] < path[first])
            first = i;
    }
    used =
        (size_t)snprintf(msg, sizeof(msg), "dependency cycle: %s", s->services[path[first]].name);
    at = first;
    do {
        at = at + 1 < n_path ? at + 1 : start;
        if (used < sizeof(msg))
            used += (size_t)snprintf(msg + used, sizeof(msg) - used, " -> %s",
                                     s->services[path[at]].name);
    } while (at != first);
    unplaced_dep(s, placed, path[first], &which);
    return fail(c, c->dep_nodes[path[first]][which], "%s", msg);
}

/* ------------------------------------------------------------ the parse */

static int
parse_root(struct pctx *c, const struct ynode *root)
{
    const struct ynode *services = NULL;
    int rc;

    if (root == NULL)
        return fail_at(c, 1, 1, EPH_EINVAL, "empty template, expected 'version: 1' and 'services'");
    if (root->kind != YNODE_MAPPING)
        return fail(c, root, "template must be a mapping, expected 'version: 1' and 'services'");
    rc = parse_version(c, root);
    if (rc < 0)
        return rc;
    c->s->version = 1;
    for (size_t i = 0; i < n_pairs(root); i++) {
        const struct ynode *k = pair_key(root, i), *v = pair_value(root, i);

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(k->text, "version") == 0) {
            rc = 0; /* checked first */
        } else if (strcmp(k->text, "params") == 0) {
            rc = parse_params(c, v);
        } else if (strcmp(k->text, "defaults") == 0) {
            rc = parse_defaults(c, v);
        } else if (strcmp(k->text, "services") == 0) {
            services = v;
            rc = parse_services(c, v);
        } else if (strcmp(k->text, "kubernetes") == 0) {
            /* The kubernetes driver's: only its shape is ours to check. */
            if (!is_null(v) && v->kind != YNODE_MAPPING)
                rc = fail(c, v, "'kubernetes' must be a mapping");
        } else {
            rc = unknown_key(c, k, "template", "version, params, defaults, services, kubernetes");
        }
        if (rc < 0)
            return rc;
    }
    if (services == NULL)
        return fail(c, root, "missing 'services', expected at least one service");
    rc = check_depends_on(c);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < c->n_refs; i++) {
        rc = check_refs(c, c->refs[i]);
        if (rc < 0)
            return rc;
    }
    return check_cycles(c);
}

int
spec_parse(const char *yaml, size_t len, const char *file, struct spec **out, struct eph_err *err)
{
    struct pctx c = {.file = file ? file : "template", .yaml = yaml, .yaml_len = len, .err = err};
    struct ynode *root = NULL;
    const struct ynode *dup = NULL;
    size_t bad;
    int rc;

    *out = NULL;
    if (len > SPEC_MAX_BYTES)
        return eph_err_set(err, EPH_ETOOBIG, "%s: template is larger than %d bytes", c.file,
                           SPEC_MAX_BYTES);
    bad = first_bad_byte((const unsigned char *)yaml, len);
    if (bad < len) {
        int line, col;

        position_of(yaml, bad, &line, &col);
        if (yaml[bad] == '\0')
            return fail_at(&c, line, col, EPH_EPARSE, "invalid YAML: NUL byte in the file");
        return fail_at(&c, line, col, EPH_EPARSE, "invalid YAML: not UTF-8 text");
    }
    bad = find_explicit_key(yaml, len);
    if (bad < len) {
        int line, col;

        position_of(yaml, bad, &line, &col);
        return fail_at(&c, line, col, EPH_EINVAL,
                       "explicit keys ('? ') are not supported, write 'key: value'");
    }
    rc = tree_build(&c, yaml, len, &root);
    if (rc < 0)
        return rc;
    if (root != NULL)
        find_duplicate(root, &dup);
    if (dup != NULL) {
        char b[SHOW_BUF];

        rc = fail(&c, dup, "duplicate key '%s'", show(dup->text, b));
        goto out;
    }
    c.s = xcalloc(1, sizeof(*c.s));
    c.s->file = xstrdup(c.file);
    c.s->default_wake_outside_hours = -1;
    rc = parse_root(&c, root);
    if (rc == 0) {
        *out = c.s;
        c.s = NULL;
    }
out:
    spec_free(c.s);
    for (size_t i = 0; i < SPEC_MAX_SERVICES; i++)
        free(c.dep_nodes[i]);
    free(c.refs);
    ynode_free(root);
    return rc;
}

int
spec_parse_string(const char *yaml, const char *file, struct spec **out, struct eph_err *err)
{
    return spec_parse(yaml, strlen(yaml), file, out, err);
}

int
spec_parse_file(const char *path, struct spec **out, struct eph_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    rc = fs_read_all(path, SPEC_MAX_BYTES, &data, &len);
    if (rc == EPH_ETOOBIG)
        rc = eph_err_set(err, EPH_ETOOBIG, "%s: template is larger than %d bytes", path,
                         SPEC_MAX_BYTES);
    else if (rc < 0)
        rc = eph_err_set(err, rc, "cannot read '%s': %s", path, eph_strerror(rc));
    else
        rc = spec_parse(data, len, path, out, err);
    free(data);
    return rc;
}

void
spec_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void
spec_free(struct spec *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_params; i++) {
        free(s->params[i].name);
        free(s->params[i].default_value);
        spec_strv_free(s->params[i].allowed, s->params[i].n_allowed);
    }
    free(s->params);
    for (size_t i = 0; i < s->n_services; i++) {
        struct spec_service *svc = &s->services[i];

        free(svc->name);
        free(svc->run);
        free(svc->upstream);
        free(svc->dir);
        free(svc->setup);
        for (size_t j = 0; j < svc->n_env; j++) {
            free(svc->env[j].key);
            free(svc->env[j].value);
        }
        free(svc->env);
        spec_strv_free(svc->depends_on, svc->n_depends_on);
        free(svc->health_path);
    }
    free(s->services);
    free(s->default_schedule_awake);
    free(s->default_schedule_tz);
    free(s->file);
    free(s);
}

/* ------------------------------------------------- using a parsed spec */

int
spec_service_index(const struct spec *s, const char *name)
{
    for (size_t i = 0; i < s->n_services; i++) {
        if (strcmp(s->services[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

void
spec_order(const struct spec *s, size_t *order)
{
    bool placed[SPEC_MAX_SERVICES];
    size_t n = topo_order(s, order, placed);

    EPH_ASSERT(n == s->n_services); /* the parser refuses cycles */
}

static int
find_param(const struct spec *s, const char *name)
{
    for (size_t i = 0; i < s->n_params; i++) {
        if (strcmp(s->params[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

int
spec_resolve_params(const struct spec *s, const struct spec_kv *given, size_t n_given,
                    char ***values_out, struct eph_err *err)
{
    char **v = xcalloc(s->n_params ? s->n_params : 1, sizeof(*v));
    char b[SHOW_BUF], list[EPH_ERR_MSG_MAX];
    int rc = 0;

    *values_out = NULL;
    for (size_t i = 0; i < n_given && rc == 0; i++) {
        const char *name = given[i].key, *value = given[i].value;
        int j = name ? find_param(s, name) : -1;

        if (name == NULL)
            rc = eph_err_set(err, EPH_EINVAL, "param without a name");
        else if (j < 0)
            rc = eph_err_set(err, EPH_EINVAL, "unknown param '%s'", show(name, b));
        else if (v[j] != NULL)
            rc = eph_err_set(err, EPH_EINVAL, "param '%s' is given twice", name);
        else if (value == NULL)
            rc = eph_err_set(err, EPH_EINVAL, "param '%s' has no value", name);
        else if (!param_allows(&s->params[j], value)) {
            join_allowed(&s->params[j], list, sizeof(list));
            rc = eph_err_set(err, EPH_EINVAL, "param '%s' must be one of: %s", name, list);
        } else
            v[j] = xstrdup(value);
    }
    for (size_t j = 0; j < s->n_params && rc == 0; j++) {
        if (v[j] != NULL)
            continue;
        if (s->params[j].default_value == NULL)
            rc = eph_err_set(err, EPH_EINVAL, "param '%s' is required", s->params[j].name);
        else
            v[j] = xstrdup(s->params[j].default_value);
    }
    if (rc < 0) {
        spec_strv_free(v, s->n_params);
        return rc;
    }
    *values_out = v;
    return 0;
}

/* The value of one reference for one environment, appended to b. */
static int
expand_ref(const struct spec *s, const struct spec_vars *vars, const char *text,
           const struct ref *r, struct buf *b, struct eph_err *err)
{
    const char *value = NULL;
    char port[16], whole[SHOW_BUF];
    enum ref_kind kind;
    size_t i;
    int rc;

    rc = ref_lookup(s, text, r, &kind, &i, err);
    if (rc < 0)
        return rc;
    switch (kind) {
    case REF_HOST: value = vars->hosts ? vars->hosts[i] : NULL; break;
    case REF_URL: value = vars->urls ? vars->urls[i] : NULL; break;
    case REF_PARAM: value = vars->param_values ? vars->param_values[i] : NULL; break;
    case REF_ENV_NAME: value = vars->env_name; break;
    case REF_PORT:
        if (vars->ports != NULL) {
            snprintf(port, sizeof(port), "%d", vars->ports[i]);
            value = port;
        }
        break;
    }
    if (value == NULL)
        return eph_err_set(err, EPH_EINVAL, "no value for '%s'",
                           show_n(text + r->start, r->end - r->start, whole, sizeof(whole)));
    if (buf_puts(b, value) < 0)
        return eph_err_set(err, EPH_ETOOBIG, "expanded text is longer than %d bytes",
                           SPEC_MAX_EXPANDED_BYTES);
    return 0;
}

int
spec_expand(const struct spec *s, const struct spec_vars *vars, const char *text, char **out,
            struct eph_err *err)
{
    struct buf b;
    struct ref r;
    size_t len = strlen(text), pos = 0, copied = 0;
    int found, rc = 0;

    *out = NULL;
    buf_init(&b, SPEC_MAX_EXPANDED_BYTES);
    while (rc == 0) {
        found = ref_next(text, len, &pos, &r);
        if (found == 0)
            break;
        if (found < 0) {
            rc = eph_err_set(err, EPH_EINVAL, "unterminated '${', expected '}'");
            break;
        }
        if (buf_append(&b, text + copied, r.start - copied) < 0)
            rc = eph_err_set(err, EPH_ETOOBIG, "expanded text is longer than %d bytes",
                             SPEC_MAX_EXPANDED_BYTES);
        if (rc == 0)
            rc = expand_ref(s, vars, text, &r, &b, err);
        copied = r.end;
    }
    if (rc == 0 && buf_append(&b, text + copied, len - copied) < 0)
        rc = eph_err_set(err, EPH_ETOOBIG, "expanded text is longer than %d bytes",
                         SPEC_MAX_EXPANDED_BYTES);
    if (rc < 0) {
        buf_release(&b);
        return rc;
    }
    *out = b.data ? buf_steal(&b) : xstrdup("");
    return 0;
}

/* "my-db" -> "MY_DB", for variable names; free() it. */
static char *
env_prefix(const char *name)
{
    char *up = xstrdup(name);

    for (char *p = up; *p; p++) {
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
        else if (*p == '-')
            *p = '_';
    }
    return up;
}

int
spec_service_environ(const struct spec *s, size_t idx, const struct spec_vars *vars,
                     char ***envp_out, size_t *count_out, struct eph_err *err)
{
    const struct spec_service *svc;
    size_t cap, n = 0, n_base;
    char **v;
    int rc = 0;

    *envp_out = NULL;
    *count_out = 0;
    EPH_ASSERT(idx < s->n_services);
    svc = &s->services[idx];
    if (vars->env_name == NULL || vars->ports == NULL || vars->hosts == NULL ||
        vars->urls == NULL || (s->n_params > 0 && vars->param_values == NULL))
        return eph_err_set(err, EPH_EINVAL, "incomplete variables for service '%s'", svc->name);
    cap = 2 + s->n_params + 3 * s->n_services + svc->n_env + 1;
    v = xcalloc(cap, sizeof(*v));
    v[n++] = xasprintf("PORT=%d", vars->ports[idx]);
    v[n++] = xasprintf("EPH_ENV=%s", vars->env_name);
    for (size_t i = 0; i < s->n_params; i++) {
        char *up = env_prefix(s->params[i].name);
        const char *value = vars->param_values[i];

        v[n++] = xasprintf("EPH_PARAM_%s=%s", up, value ? value : "");
        free(up);
    }
    for (size_t i = 0; i < s->n_services; i++) {
        char *up;

        if (i == idx)
            continue;
        up = env_prefix(s->services[i].name);
        v[n++] = xasprintf("%s_HOST=%s", up, vars->hosts[i] ? vars->hosts[i] : "");
        v[n++] = xasprintf("%s_PORT=%d", up, vars->ports[i]);
        v[n++] = xasprintf("%s_URL=%s", up, vars->urls[i] ? vars->urls[i] : "");
        free(up);
    }
    /* The service's own entries win: a clash replaces the entry in place.
     * Only the entries above can clash (own names are unique). */
    n_base = n;
    for (size_t i = 0; i < svc->n_env && rc == 0; i++) {
        const char *key = svc->env[i].key;
        size_t key_len = strlen(key);
        char *value = NULL, *entry;
        size_t at = n;

        rc = spec_expand(s, vars, svc->env[i].value, &value, err);
        if (rc < 0)
            break;
        entry = xasprintf("%s=%s", key, value);
        free(value);
        for (size_t j = 0; j < n_base; j++) {
            if (strncmp(v[j], key, key_len) == 0 && v[j][key_len] == '=') {
                at = j;
                break;
            }
        }
        if (at == n)
            n++;
        free(v[at]);
        v[at] = entry;
    }
    if (rc < 0) {
        spec_strv_free(v, n);
        return rc;
    }
    *envp_out = v;
    *count_out = n;
    return 0;
}
