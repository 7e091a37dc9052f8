/*
 * tests/unit/api/test_api_request.c - the request bodies of the API
 * (api/api_request.c): every refusal with the exact message a client gets
 * in its 400, the order of the checks, what good bodies turn into, and the
 * derived default name.
 */
#include "api/api_int.h"

#include <criterion/criterion.h>
#include <string.h>

#include "util/xmalloc.h"

#define MAX_TTL_S (7 * 86400) /* the server's default max_ttl, "7d" */

#define A40 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define A64 A40 "aaaaaaaaaaaaaaaaaaaaaaaa"
#define A100 A64 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

#define NAME_RULE "expected a DNS label of at most 40 characters (a-z, 0-9 and '-' inside)"

/* Bodies every parser refuses the same way, before looking at members. */
static const struct {
    const char *body, *want;
} bad_json[] = {
    {"", "a JSON object body is required"},
    {"nope", "invalid JSON body: '[' or '{' expected near 'nope' at line 1 column 4"},
    {"{", "invalid JSON body: string or '}' expected near end of file at line 1 column 1"},
    {"{\"project\": \"shop\",}",
     "invalid JSON body: string or '}' expected near '}' at line 1 column 20"},
    {"{\"project\": \"shop\"} {}",
     "invalid JSON body: end of file expected near '{' at line 1 column 21"},
    {"{\"a\": 1, \"a\": 2}",
     "invalid JSON body: duplicate object key near '\"a\"' at line 1 column 12"},
    {"{\"a\": \"\\u0000\"}", "invalid JSON body: \\u0000 is not allowed without "
                             "JSON_ALLOW_NUL near '\"\\u0000\"' at line 1 column 14"},
    {"{\"a\": \"\xff\"}", "invalid JSON body: unable to decode byte 0xff near '\"' at line 1 "
                          "column 7"},
    {"[]", "the body must be a JSON object"},
    {"[{\"project\": \"shop\"}]", "the body must be a JSON object"},
};

Test(api_request, refuses_what_is_not_a_json_object_in_every_parser)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_json); i++) {
        const char *body = bad_json[i].body;
        struct eph_err e1 = {0}, e2 = {0}, e3 = {0};
        struct api_env_create c;
        struct api_project_add p;
        struct api_extend x;

        cr_expect_eq(api__parse_env_create(body, strlen(body), MAX_TTL_S, &c, &e1), EPH_EINVAL,
                     "case %zu", i);
        cr_expect_str_eq(e1.msg, bad_json[i].want, "case %zu", i);
        cr_expect_eq(api__parse_project_add(body, strlen(body), &p, &e2), EPH_EINVAL, "case %zu",
                     i);
        cr_expect_str_eq(e2.msg, bad_json[i].want, "case %zu", i);
        cr_expect_eq(api__parse_extend(body, strlen(body), &x, &e3), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(e3.msg, bad_json[i].want, "case %zu", i);
        api__env_create_release(&c);
        api__project_add_release(&p);
        api__extend_release(&x);
    }
}

/* ------------------------------------------------------------- POST /envs */

static const struct {
    const char *body, *want;
} bad_create[] = {
    /* types first, in the order project, ref, name, ttl */
    {"{\"project\": 1}", "'project' must be a string"},
    {"{\"project\": {}}", "'project' must be a string"},
    {"{\"project\": \"shop\", \"ref\": true}", "'ref' must be a string"},
    {"{\"project\": \"shop\", \"name\": []}", "'name' must be a string"},
    {"{\"project\": \"shop\", \"ttl\": 7200}", "'ttl' must be a string"},
    {"{\"ttl\": 2, \"name\": 3}", "'name' must be a string"},
    {"{\"ttl\": 2}", "'ttl' must be a string"},
    /* then what is required */
    {"{}", "'project' is required"},
    {"{\"project\": null, \"name\": \"fx\"}", "'project' is required"},
    {"{\"name\": \"BAD\"}", "'project' is required"},
    {"{\"project\": \"shop\", \"ref\": \"\"}", "'ref' must not be empty"},
    /* names */
    {"{\"project\": \"shop\", \"name\": \"\"}", "invalid name '': " NAME_RULE},
    {"{\"project\": \"shop\", \"name\": \"Fx\"}", "invalid name 'Fx': " NAME_RULE},
    {"{\"project\": \"shop\", \"name\": \"-fx\"}", "invalid name '-fx': " NAME_RULE},
    {"{\"project\": \"shop\", \"name\": \"fx-\"}", "invalid name 'fx-': " NAME_RULE},
    {"{\"project\": \"shop\", \"name\": \"f_x\"}", "invalid name 'f_x': " NAME_RULE},
    {"{\"project\": \"shop\", \"name\": \"f x\"}", "invalid name 'f x': " NAME_RULE},
    {"{\"project\": \"shop\", \"name\": \"caf\\u00e9\"}", "invalid name 'caf\xc3\xa9': " NAME_RULE},
    {"{\"project\": \"shop\", \"name\": \"" A40 "a\"}", "invalid name '" A40 "a': " NAME_RULE},
    /* a long name is quoted cut to 64 bytes */
    {"{\"project\": \"shop\", \"name\": \"" A100 "\"}", "invalid name '" A64 "': " NAME_RULE},
    {"{\"project\": \"shop\", \"name\": \"BAD\", \"ttl\": \"0s\", \"params\": 1}",
     "invalid name 'BAD': " NAME_RULE},
    /* ttl */
    {"{\"project\": \"shop\", \"ttl\": \"\"}",
     "'ttl': empty duration, expected e.g. 30m, 2h or 1h30m"},
    {"{\"project\": \"shop\", \"ttl\": \"2x\"}",
     "'ttl': invalid duration '2x', expected e.g. 30m, 2h or 1h30m"},
    {"{\"project\": \"shop\", \"ttl\": \"2\"}",
     "'ttl': invalid duration '2', expected e.g. 30m, 2h or 1h30m"},
    {"{\"project\": \"shop\", \"ttl\": \"-1h\"}",
     "'ttl': invalid duration '-1h', expected e.g. 30m, 2h or 1h30m"},
    {"{\"project\": \"shop\", \"ttl\": \"0s\"}", "ttl 0s is not a positive duration"},
    {"{\"project\": \"shop\", \"ttl\": \"0h0m\"}", "ttl 0h0m is not a positive duration"},
    {"{\"project\": \"shop\", \"ttl\": \"8d\"}", "ttl 8d exceeds the server maximum of 7d"},
    {"{\"project\": \"shop\", \"ttl\": \"7d1s\"}", "ttl 7d1s exceeds the server maximum of 7d"},
    {"{\"project\": \"shop\", \"ttl\": \"99999999999s\"}",
     "'ttl': duration '99999999999s' is too long"},
    {"{\"project\": \"shop\", \"ttl\": \"0s\", \"params\": 1}",
     "ttl 0s is not a positive duration"},
    /* params: an object of strings, at most 64 */
    {"{\"project\": \"shop\", \"params\": []}", "'params' must be an object of strings"},
    {"{\"project\": \"shop\", \"params\": \"dataset=x\"}", "'params' must be an object of strings"},
    {"{\"project\": \"shop\", \"params\": false}", "'params' must be an object of strings"},
    {"{\"project\": \"shop\", \"params\": {\"dataset\": 1}}", "param 'dataset' must be a string"},
    {"{\"project\": \"shop\", \"params\": {\"a\": \"x\", \"b\": null}}",
     "param 'b' must be a string"},
    {"{\"project\": \"shop\", \"params\": {\"a\": [\"x\"]}}", "param 'a' must be a string"},
    {"{\"project\": \"shop\", \"params\": {\"a\": {}}}", "param 'a' must be a string"},
    {"{\"project\": \"shop\", \"params\": {\"" A100 "\": 1.5}}",
     "param '" A64 "' must be a string"},
};

Test(api_request, refuses_bad_env_bodies_with_their_message)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_create); i++) {
        const char *body = bad_create[i].body;
        struct eph_err err = {0};
        struct api_env_create req;
        int rc = api__parse_env_create(body, strlen(body), MAX_TTL_S, &req, &err);

        cr_expect_eq(rc, EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad_create[i].want, "case %zu", i);
        /* Nothing is left to the caller after a refusal. */
        cr_expect_null(req.project, "case %zu", i);
        cr_expect_null(req.params, "case %zu", i);
        api__env_create_release(&req);
    }
}

Test(api_request, refuses_more_than_64_params_before_looking_at_them)
{
    char *body = xstrdup("{\"project\": \"shop\", \"params\": {");
    struct eph_err err = {0};
    struct api_env_create req;

    for (int i = 0; i < SPEC_MAX_PARAMS + 1; i++) {
        char *more = xasprintf("%s%s\"p%d\": %s", body, i ? ", " : "", i, i == 64 ? "1" : "\"v\"");

        free(body);
        body = more;
    }
    {
        char *more = xasprintf("%s}}", body);

        free(body);
        body = more;
    }
    cr_assert_eq(api__parse_env_create(body, strlen(body), MAX_TTL_S, &req, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "too many params: at most 64");
    api__env_create_release(&req);
    free(body);
}

Test(api_request, takes_a_full_env_body)
{
    static const char body[] = "{\"project\": \"shop\", \"ref\": \"feature-x\", \"name\": \"fx\", "
                               "\"ttl\": \"2h\", \"params\": {\"dataset\": \"edge-cases\", "
                               "\"b\": \"\", \"a\": \"caf\\u00e9\"}}";
    struct eph_err err = {0};
    struct api_env_create req;

    cr_assert_eq(api__parse_env_create(body, strlen(body), MAX_TTL_S, &req, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(req.project, "shop");
    cr_expect_str_eq(req.ref, "feature-x");
    cr_expect_str_eq(req.name, "fx");
    cr_expect_eq(req.ttl_s, 7200);
    cr_assert_eq(req.n_params, 3);
    /* in the body's order: the template reports the first unknown one */
    cr_expect_str_eq(req.params[0].key, "dataset");
    cr_expect_str_eq(req.params[0].value, "edge-cases");
    cr_expect_str_eq(req.params[1].key, "b");
    cr_expect_str_eq(req.params[1].value, "");
    cr_expect_str_eq(req.params[2].key, "a");
    cr_expect_str_eq(req.params[2].value, "caf\xc3\xa9");
    api__env_create_release(&req);
    cr_expect_null(req.project);
    api__env_create_release(&req); /* twice is harmless */
}

Test(api_request, leaves_absent_and_null_env_members_to_the_defaults)
{
    static const char *const bodies[] = {
        "{\"project\": \"shop\"}",
        "{\"project\": \"shop\", \"ref\": null, \"name\": null, \"ttl\": null, \"params\": null}",
        "{\"project\": \"shop\", \"owner\": 7, \"services\": [1]}", /* unknown members: ignored */
    };

    for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
        struct eph_err err = {0};
        struct api_env_create req;
        int rc = api__parse_env_create(bodies[i], strlen(bodies[i]), MAX_TTL_S, &req, &err);

        cr_assert_eq(rc, 0, "case %zu: %s", i, err.msg);
        cr_expect_str_eq(req.project, "shop", "case %zu", i);
        cr_expect_null(req.ref, "case %zu", i);
        cr_expect_null(req.name, "case %zu", i);
        cr_expect_eq(req.ttl_s, 0, "case %zu", i);
        cr_expect_null(req.params, "case %zu", i);
        cr_expect_eq(req.n_params, 0, "case %zu", i);
        api__env_create_release(&req);
    }
}

Test(api_request, accepts_the_edges_of_names_ttls_and_params)
{
    static const char body[] = "{\"project\": \"Any thing\", \"ref\": \" \", \"name\": \"" A40
                               "\", \"ttl\": \"7d\", \"params\": {}}";
    struct eph_err err = {0};
    struct api_env_create req;

    cr_assert_eq(api__parse_env_create(body, strlen(body), MAX_TTL_S, &req, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(req.project, "Any thing"); /* the store says whether it exists */
    cr_expect_str_eq(req.ref, " ");             /* git says whether it resolves */
    cr_expect_str_eq(req.name, A40);
    cr_expect_eq(req.ttl_s, MAX_TTL_S);
    cr_expect_not_null(req.params);
    cr_expect_eq(req.n_params, 0);
    api__env_create_release(&req);
}

Test(api_request, measures_ttls_against_the_maximum_it_is_given)
{
    static const char body[] = "{\"project\": \"shop\", \"ttl\": \"2h\"}";
    struct eph_err err = {0};
    struct api_env_create req;

    cr_assert_eq(api__parse_env_create(body, strlen(body), 3600, &req, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "ttl 2h exceeds the server maximum of 1h");
    cr_assert_eq(api__parse_env_create(body, strlen(body), 5400, &req, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "ttl 2h exceeds the server maximum of 1h30m");
    cr_assert_eq(api__parse_env_create(body, strlen(body), 7200, &req, &err), 0);
    api__env_create_release(&req);
}

Test(api_request, reads_only_len_bytes_of_the_body)
{
    static const char body[] = "{\"project\": \"shop\"}trailing bytes of another buffer";
    struct eph_err err = {0};
    struct api_env_create req;

    cr_assert_eq(api__parse_env_create(body, 19, MAX_TTL_S, &req, &err), 0, "%s", err.msg);
    cr_expect_str_eq(req.project, "shop");
    api__env_create_release(&req);
}

/* ------------------------------------------------------------- default names */

static const struct {
    const char *project, *ref, *want;
} derived[] = {
    {"shop", "feature-x", "shop-feature-x"},
    {"shop", "Feature/X_y", "shop-feature-x-y"},
    {"shop", "release/1.2", "shop-release-1-2"},
    {"shop", "--", "shop"},
    {"shop", "caf\xc3\xa9", "shop-caf"},
    {"", "", "env"},
    {"", "__", "env"},
    {"SHOP", "HEAD", "shop-head"},
    {"shop", A40 "aaaaaaaaaa", "shop-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, /* cut to 40 */
    /* cut at 40 on a '-': the '-' goes too */
    {"p", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-yyy", "p-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},
};

Test(api_request, derives_a_valid_default_name_from_project_and_ref)
{
    for (size_t i = 0; i < ARRAY_LEN(derived); i++) {
        char *name = api__derive_env_name(derived[i].project, derived[i].ref);

        cr_expect_str_eq(name, derived[i].want, "case %zu", i);
        cr_expect(env_name_valid(name), "case %zu: '%s'", i, name);
        free(name);
    }
}

/* ------------------------------------------------------------- POST /projects */

static const struct {
    const char *body, *want;
} bad_project[] = {
    {"{\"name\": 1, \"repo\": \"/r\"}", "'name' must be a string"},
    {"{\"name\": \"shop\", \"repo\": 1}", "'repo' must be a string"},
    {"{\"repo\": [\"/r\"]}", "'repo' must be a string"},
    {"{}", "'name' is required"},
    {"{\"repo\": \"/r\"}", "'name' is required"},
    {"{\"name\": null, \"repo\": null}", "'name' is required"},
    {"{\"name\": \"shop\"}", "'repo' is required"},
    {"{\"name\": \"BAD\"}", "'repo' is required"},
    {"{\"name\": \"\", \"repo\": \"/r\"}", "invalid project name '': " NAME_RULE},
    {"{\"name\": \"Shop\", \"repo\": \"/r\"}", "invalid project name 'Shop': " NAME_RULE},
    {"{\"name\": \"sh.op\", \"repo\": \"/r\"}", "invalid project name 'sh.op': " NAME_RULE},
    {"{\"name\": \"shop-\", \"repo\": \"/r\"}", "invalid project name 'shop-': " NAME_RULE},
    {"{\"name\": \"" A40 "a\", \"repo\": \"/r\"}", "invalid project name '" A40 "a': " NAME_RULE},
    {"{\"name\": \"" A100 "\", \"repo\": \"/r\"}", "invalid project name '" A64 "': " NAME_RULE},
};

Test(api_request, refuses_bad_project_bodies_with_their_message)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_project); i++) {
        const char *body = bad_project[i].body;
        struct eph_err err = {0};
        struct api_project_add req;
        int rc = api__parse_project_add(body, strlen(body), &req, &err);

        cr_expect_eq(rc, EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad_project[i].want, "case %zu", i);
        cr_expect_null(req.name, "case %zu", i);
        cr_expect_null(req.repo, "case %zu", i);
        api__project_add_release(&req);
    }
}

Test(api_request, takes_a_project_body)
{
    static const char body[] = "{\"name\": \"shop\", \"repo\": \"/srv/git/shop.git\", \"x\": 1}";
    struct eph_err err = {0};
    struct api_project_add req;

    cr_assert_eq(api__parse_project_add(body, strlen(body), &req, &err), 0, "%s", err.msg);
    cr_expect_str_eq(req.name, "shop");
    cr_expect_str_eq(req.repo, "/srv/git/shop.git"); /* allowed_repos is the handler's */
    api__project_add_release(&req);
    cr_expect_null(req.name);
}

/* ------------------------------------------------------------- POST /envs/{name}/extend */

static const struct {
    const char *body, *want;
} bad_extend[] = {
    {"{}", "'by' is required, e.g. {\"by\": \"1h\"}"},
    {"{\"by\": null}", "'by' is required, e.g. {\"by\": \"1h\"}"},
    {"{\"ttl\": \"1h\"}", "'by' is required, e.g. {\"by\": \"1h\"}"},
    {"{\"by\": 3600}", "'by' must be a string"},
    {"{\"by\": \"\"}", "'by': empty duration, expected e.g. 30m, 2h or 1h30m"},
    {"{\"by\": \"soon\"}", "'by': invalid duration 'soon', expected e.g. 30m, 2h or 1h30m"},
    {"{\"by\": \"1h \"}", "'by': invalid duration '1h ', expected e.g. 30m, 2h or 1h30m"},
    {"{\"by\": \"0m\"}", "'by' must be a positive duration"},
    {"{\"by\": \"9999999999d\"}", "'by': duration '9999999999d' is too long"},
    {"{\"by\": \"36500d1s\"}", "'by': duration '36500d1s' is too long"},
};

Test(api_request, refuses_bad_extend_bodies_with_their_message)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_extend); i++) {
        const char *body = bad_extend[i].body;
        struct eph_err err = {0};
        struct api_extend req;
        int rc = api__parse_extend(body, strlen(body), &req, &err);

        cr_expect_eq(rc, EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad_extend[i].want, "case %zu", i);
        cr_expect_null(req.by, "case %zu", i);
        api__extend_release(&req);
    }
}

Test(api_request, takes_an_extend_body)
{
    static const char body[] = "{\"by\": \"1h30m\"}";
    struct eph_err err = {0};
    struct api_extend req;

    cr_assert_eq(api__parse_extend(body, strlen(body), &req, &err), 0, "%s", err.msg);
    cr_expect_str_eq(req.by, "1h30m");
    cr_expect_eq(req.by_s, 5400);
    api__extend_release(&req);
    cr_expect_null(req.by);
}
