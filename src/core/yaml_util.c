/*
 * core/yaml_util.c - YAML text -> struct yaml_node trees with positions
 * (core/yaml_util.h), and the small helpers both readers of such trees use.
 *
 * Parsing goes in two steps, and the first error stops it:
 *  1. The bytes are checked for what libfyaml 0.7.12 cannot be given:
 *     anything but UTF-8 (and NUL), and explicit keys.
 *  2. libfyaml's event parser runs, and each event becomes a node (or
 *     closes one) with the position a person expects.
 */
#include "core/yaml_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libfyaml.h>

#include "util/xmalloc.h"

/* ------------------------------------------------------------- nodes */

void
yaml_node_free(struct yaml_node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n_kids; i++)
        yaml_node_free(n->kids[i]);
    free(n->kids);
    if (n->text != NULL)
        explicit_bzero(n->text, n->len); /* it may have been a secret */
    free(n->text);
    free(n);
}

static void
node_add(struct yaml_node *parent, struct yaml_node *kid)
{
    if (parent->n_kids == parent->cap_kids) {
        parent->cap_kids = parent->cap_kids ? parent->cap_kids * 2 : 4;
        parent->kids = xrealloc(parent->kids, parent->cap_kids * sizeof(*parent->kids));
    }
    parent->kids[parent->n_kids++] = kid;
}

bool
yaml_is_null(const struct yaml_node *n)
{
    return n->kind == YAML_SCALAR && n->plain &&
           (n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
            strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0);
}

bool
yaml_bool(const struct yaml_node *n, bool *out)
{
    if (n->kind != YAML_SCALAR || !n->plain)
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

const char *
yaml_kind_name(const struct yaml_node *n)
{
    switch (n->kind) {
    case YAML_MAPPING: return "a mapping";
    case YAML_SEQUENCE: return "a list";
    case YAML_SCALAR: break;
    }
    return "a string";
}

/* ------------------------------------------------------------- messages */

const char *
yaml_show_n(const char *text, size_t len, char *buf, size_t size)
{
    size_t max = size - 4; /* room for "..." and the NUL */
    size_t n = len;
    bool cut = false;

    if (max > YAML_SHOW_MAX)
        max = YAML_SHOW_MAX;
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

const char *
yaml_show(const char *text, char *buf)
{
    return yaml_show_n(text, strlen(text), buf, YAML_SHOW_BUF);
}

int
yaml_verr_at(struct eph_err *err, const char *file, int line, int col, int code, const char *fmt,
             va_list ap)
{
    char msg[EPH_ERR_MSG_MAX];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    return eph_err_set(err, code, "%s:%d:%d: %s", file, line, col, msg);
}

/* ------------------------------------------------ step 1: the bytes */

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
 * when there is none. YAML text is UTF-8 here (we take no UTF-16), and
 * libfyaml 0.7.12 loops forever on some invalid bytes ("%a\x8e") and lets
 * others through into strings.
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
 * The offset of the first explicit key ("? " where a node starts: after
 * indentation, "- " entries, "--- " or a mapping value's ": " on the same
 * line), or len when there is none. Neither reader has a use for them, and
 * libfyaml 0.7.12 crashes in fy_parser_destroy() after some malformed ones
 * ("? a:\t: ", "::\t: ? ::\t:"), so they are refused before it sees them.
 * Conservative: "? " opening a line of a block scalar, or after ": " in a
 * quoted string, is refused too.
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
        for (; i < len && p[i] != '\n' && p[i] != '\r'; i++) {
            size_t v = i + 1;

            if (p[i] != ':' || !is_blank_or_end(p, len, v))
                continue;
            while (v < len && (p[v] == ' ' || p[v] == '\t'))
                v++;
            if (v < len && p[v] == '?' && is_blank_or_end(p, len, v + 1))
                return v;
        }
        i++;
    }
    return len;
}

/* ------------------------------------------------ step 2: events -> tree */

/* The tree being built, and what its messages need. */
struct tree {
    const struct yaml_parse_opts *opts;
    const char *text; /* the bytes being parsed, len of them */
    size_t len;
    struct eph_err *err;
    struct yaml_node *stack[YAML_MAX_DEPTH]; /* the open collections */
    size_t depth;
    struct yaml_node *root;
    int docs; /* documents started so far */
};

static int fail_at(struct tree *t, int line, int col, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int
fail_at(struct tree *t, int line, int col, int code, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = yaml_verr_at(t->err, t->opts->file, line, col, code, fmt, ap);
    va_end(ap);
    return rc;
}

/* libfyaml's diagnostics would go to stderr; they are collected instead. */
static void
on_diag_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
}

/* The first error libfyaml collected, as our message. */
static int
yaml_error(struct tree *t, struct fy_diag *diag)
{
    void *it = NULL;

    for (;;) {
        struct fy_diag_error *e = fy_diag_errors_iterate(diag, &it);

        if (e == NULL)
            break;
        if (e->type != FYET_ERROR)
            continue;
        /* libfyaml's collected positions are already 1-based. */
        return fail_at(t, e->line > 0 ? e->line : 1, e->column > 0 ? e->column : 1, EPH_EPARSE,
                       "invalid YAML: %s", e->msg ? e->msg : "syntax error");
    }
    return fail_at(t, 1, 1, EPH_EPARSE, "invalid YAML");
}

/*
 * libfyaml 0.7.12 misreads two '' escapes in a row in a single-quoted string
 * ('x''''y' comes out as x'''y, cut to a wrong length, and leaks). True when
 * the single-quoted string whose text starts at byte `pos` has them.
 */
static bool
has_escapes_in_a_row(const char *text, size_t len, size_t pos)
{
    bool after_escape = false;

    while (pos < len) {
        if (text[pos] != '\'') {
            after_escape = false;
            pos++;
        } else if (pos + 1 < len && text[pos + 1] == '\'') {
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

/* One event into the tree. */
static int
tree_add_event(struct tree *t, struct fy_event *ev, const struct fy_mark *m, int line, int col)
{
    const char *noun = t->opts->doc_noun;
    struct yaml_node *n;
    const char *text;
    size_t len = 0;
    char buf[YAML_SHOW_BUF];

    switch (ev->type) {
    case FYET_DOCUMENT_START:
        if (++t->docs == 1)
            return 0;
        if (noun == NULL)
            return fail_at(t, line, col, EPH_EPARSE, "more than one YAML document");
        return fail_at(t, line, col, EPH_EPARSE,
                       "more than one YAML document, expected a single %s", noun);
    case FYET_ALIAS:
        if (noun == NULL)
            return fail_at(t, line, col, EPH_EINVAL, "anchors and aliases are not supported");
        text = fy_token_get_text(ev->alias.anchor, &len);
        return fail_at(t, line, col, EPH_EINVAL,
                       "unsupported alias '*%s', %ss cannot use anchors and aliases",
                       yaml_show_n(text ? text : "", text ? len : 0, buf, sizeof(buf)), noun);
    case FYET_MAPPING_END:
    case FYET_SEQUENCE_END:
        if (t->depth == 0)
            return fail_at(t, line, col, EPH_EPARSE, "invalid YAML");
        n = t->stack[--t->depth];
        if (n->kind == YAML_MAPPING && n->n_kids % 2 != 0)
            return fail_at(t, line, col, EPH_EPARSE, "invalid YAML: key without value");
        return 0;
    case FYET_SCALAR:
    case FYET_MAPPING_START:
    case FYET_SEQUENCE_START: break;
    default: return 0;
    }

    if (ev->type == FYET_SCALAR && m != NULL &&
        fy_token_scalar_style(ev->scalar.value) == FYSS_SINGLE_QUOTED && m->input_pos > 0 &&
        m->input_pos <= t->len && t->text[m->input_pos - 1] == '\'' &&
        has_escapes_in_a_row(t->text, t->len, m->input_pos))
        return fail_at(t, line, col, EPH_EPARSE,
                       "cannot read two '' escapes in a row in a single-quoted string, "
                       "use a double-quoted string");
    if (ev->type != FYET_SCALAR && t->depth == (size_t)t->opts->max_depth)
        return fail_at(t, line, col, EPH_EINVAL, "nested deeper than %d levels",
                       t->opts->max_depth);

    n = xcalloc(1, sizeof(*n));
    n->line = line;
    n->col = col;
    if (ev->type == FYET_SCALAR) {
        text = fy_token_get_text(ev->scalar.value, &len);
        if (text == NULL) {
            /* Never silently "": the library failed to decode it. */
            yaml_node_free(n);
            return fail_at(t, line, col, EPH_EPARSE, "invalid YAML: cannot read this string");
        }
        if (memchr(text, '\0', len) != NULL) {
            yaml_node_free(n);
            return fail_at(t, line, col, EPH_EINVAL, "NUL character in string");
        }
        n->kind = YAML_SCALAR;
        n->plain = fy_token_scalar_style(ev->scalar.value) == FYSS_PLAIN;
        n->text = xstrndup(text, len);
        n->len = len;
    } else {
        n->kind = ev->type == FYET_MAPPING_START ? YAML_MAPPING : YAML_SEQUENCE;
    }
    if (t->depth > 0) {
        node_add(t->stack[t->depth - 1], n);
    } else if (t->root == NULL) {
        t->root = n;
    } else {
        yaml_node_free(n); /* a parser bug: two roots in one document */
        return fail_at(t, line, col, EPH_EPARSE, "invalid YAML");
    }
    if (n->kind != YAML_SCALAR)
        t->stack[t->depth++] = n;
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
node_column(struct fy_event *ev, const struct fy_mark *m, const char *text, size_t len)
{
    int col = m->column + 1;
    char before;

    if (m->input_pos > len || (ev->type != FYET_ALIAS && ev->type != FYET_SCALAR))
        return col;
    before = m->input_pos > 0 && m->column > 0 ? text[m->input_pos - 1] : '\n';
    if (ev->type == FYET_ALIAS)
        return before == '*' ? col - 1 : col;
    switch (fy_token_scalar_style(ev->scalar.value)) {
    case FYSS_SINGLE_QUOTED: return before == '\'' ? col - 1 : col;
    case FYSS_DOUBLE_QUOTED: return before == '"' ? col - 1 : col;
    case FYSS_LITERAL:
    case FYSS_FOLDED:
        for (size_t i = m->input_pos; m->column == 0 && i < len && text[i] == ' '; i++)
            col++;
        return col;
    default: return col;
    }
}

/* Runs libfyaml's event parser over t->text into t->root. */
static int
tree_build(struct tree *t)
{
    struct fy_diag_cfg dcfg;
    struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET};
    struct fy_diag *diag = NULL;
    struct fy_parser *parser = NULL;
    int line = 1, col = 1;
    int rc = 0;

    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = on_diag_output;
    dcfg.colorize = false;
    diag = fy_diag_create(&dcfg);
    if (diag == NULL)
        return eph_err_set(t->err, -ENOMEM, "%s: cannot create the YAML parser", t->opts->file);
    fy_diag_set_collect_errors(diag, true);
    pcfg.diag = diag;
    parser = fy_parser_create(&pcfg);
    if (parser == NULL || fy_parser_set_string(parser, t->text, t->len) != 0) {
        rc = eph_err_set(t->err, -ENOMEM, "%s: cannot create the YAML parser", t->opts->file);
        goto out;
    }
    while (rc == 0) {
        struct fy_event *ev = fy_parser_parse(parser);
        const struct fy_mark *m;

        if (ev == NULL)
            break; /* the end, or an error: see below */
        m = fy_event_start_mark(ev);
        /* Events without a mark (an empty value) take the previous position,
         * which is their key's. */
        if (m != NULL) {
            line = m->line + 1;
            col = node_column(ev, m, t->text, t->len);
        }
        rc = tree_add_event(t, ev, m, line, col);
        fy_parser_event_free(parser, ev);
    }
    if (rc == 0 && (fy_parser_get_stream_error(parser) || fy_diag_got_error(diag)))
        rc = yaml_error(t, diag);
    if (rc == 0 && t->depth != 0)
        rc = fail_at(t, line, col, EPH_EPARSE, "invalid YAML: unexpected end of input");
out:
    fy_parser_destroy(parser);
    fy_diag_destroy(diag); /* unlike fy_diag_unref(), frees the collected errors */
    return rc;
}

int
yaml_parse_tree(const char *text, size_t len, const struct yaml_parse_opts *opts,
                struct yaml_node **root_out, struct eph_err *err)
{
    struct tree t = {.opts = opts, .text = text, .len = len, .err = err};
    size_t bad;
    int line, col, rc;

    EPH_ASSERT(opts->max_depth > 0 && opts->max_depth <= YAML_MAX_DEPTH);
    *root_out = NULL;
    bad = first_bad_byte((const unsigned char *)text, len);
    if (bad < len) {
        position_of(text, bad, &line, &col);
        return fail_at(&t, line, col, EPH_EPARSE,
                       text[bad] == '\0' ? "invalid YAML: NUL byte in the file"
                                         : "invalid YAML: not UTF-8 text");
    }
    bad = find_explicit_key(text, len);
    if (bad < len) {
        position_of(text, bad, &line, &col);
        return fail_at(&t, line, col, EPH_EINVAL,
                       "explicit keys ('? ') are not supported, write 'key: value'");
    }
    rc = tree_build(&t);
    if (rc == 0) {
        *root_out = t.root;
        t.root = NULL;
    }
    yaml_node_free(t.root);
    return rc;
}
