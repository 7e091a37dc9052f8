/*
 * tests/unit/api/test_api_request.c - the request bodies of the API
 * (api/api_request.c): every refusal with the exact message a client gets
 * in its 400, the order of the checks, what good bodies turn into, and the
 * derived default name. Environments, projects and extensions first, then
 * the bodies about access: visibility, users, roles, passwords, tokens and
 * share links.
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
#define VIS_RULE "expected team, private or link"
#define ROLE_RULE "expected viewer, member or admin"

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

Test(api_request, refuses_what_is_not_a_json_object_in_the_access_parsers)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_json); i++) {
        const char *body = bad_json[i].body;
        size_t len = strlen(body);
        struct eph_err e1 = {0}, e2 = {0}, e3 = {0}, e4 = {0}, e5 = {0}, e6 = {0};
        enum visibility vis;
        enum role role;
        char *password = NULL;
        struct api_user_add u;
        struct api_token_create t;
        struct api_link_create l;

        cr_expect_eq(api__parse_visibility(body, len, &vis, &e1), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(e1.msg, bad_json[i].want, "case %zu", i);
        cr_expect_eq(api__parse_user_add(body, len, &u, &e2), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(e2.msg, bad_json[i].want, "case %zu", i);
        cr_expect_eq(api__parse_role(body, len, &role, &e3), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(e3.msg, bad_json[i].want, "case %zu", i);
        cr_expect_eq(api__parse_password(body, len, &password, &e4), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(e4.msg, bad_json[i].want, "case %zu", i);
        cr_expect_null(password, "case %zu", i);
        cr_expect_eq(api__parse_token_create(body, len, &t, &e5), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(e5.msg, bad_json[i].want, "case %zu", i);
        /* A link needs no body at all: only a body that is sent must be an object. */
        if (len > 0) {
            cr_expect_eq(api__parse_link_create(body, len, MAX_TTL_S, &l, &e6), EPH_EINVAL,
                         "case %zu", i);
            cr_expect_str_eq(e6.msg, bad_json[i].want, "case %zu", i);
            api__link_create_release(&l);
        }
        api__user_add_release(&u);
        api__token_create_release(&t);
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
    /* visibility: checked with the types, before what is required */
    {"{\"project\": \"shop\", \"visibility\": 1}", "'visibility' must be a string"},
    {"{\"project\": \"shop\", \"visibility\": \"public\"}",
     "invalid visibility 'public': " VIS_RULE},
    {"{\"project\": \"shop\", \"visibility\": \"Team\"}", "invalid visibility 'Team': " VIS_RULE},
    {"{\"project\": \"shop\", \"visibility\": \"\"}", "invalid visibility '': " VIS_RULE},
    {"{\"visibility\": \"x\"}", "invalid visibility 'x': " VIS_RULE},
    {"{\"project\": \"shop\", \"name\": \"BAD\", \"visibility\": \"x\"}",
     "invalid visibility 'x': " VIS_RULE},
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
    cr_expect_eq(req.visibility, VIS_TEAM, "team unless asked otherwise");
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

Test(api_request, takes_the_visibility_of_a_new_environment)
{
    static const struct {
        const char *body;
        enum visibility want;
    } cases[] = {
        {"{\"project\": \"shop\", \"visibility\": \"private\"}", VIS_PRIVATE},
        {"{\"project\": \"shop\", \"visibility\": \"link\"}", VIS_LINK},
        {"{\"project\": \"shop\", \"visibility\": \"team\"}", VIS_TEAM},
        {"{\"project\": \"shop\", \"visibility\": null}", VIS_TEAM},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct eph_err err = {0};
        struct api_env_create req;
        int rc = api__parse_env_create(cases[i].body, strlen(cases[i].body), MAX_TTL_S, &req, &err);

        cr_assert_eq(rc, 0, "case %zu: %s", i, err.msg);
        cr_expect_eq(req.visibility, cases[i].want, "case %zu", i);
        api__env_create_release(&req);
    }
}

/* ------------------------------------------------------------- POST /envs/{name}/visibility */

static const struct {
    const char *body, *want;
} bad_visibility[] = {
    {"{}", "'visibility' is required, e.g. {\"visibility\": \"private\"}"},
    {"{\"visibility\": null}", "'visibility' is required, e.g. {\"visibility\": \"private\"}"},
    {"{\"vis\": \"team\"}", "'visibility' is required, e.g. {\"visibility\": \"private\"}"},
    {"{\"visibility\": 1}", "'visibility' must be a string"},
    {"{\"visibility\": [\"team\"]}", "'visibility' must be a string"},
    {"{\"visibility\": \"public\"}", "invalid visibility 'public': " VIS_RULE},
    {"{\"visibility\": \"PRIVATE\"}", "invalid visibility 'PRIVATE': " VIS_RULE},
    {"{\"visibility\": \" team\"}", "invalid visibility ' team': " VIS_RULE},
    {"{\"visibility\": \"" A100 "\"}", "invalid visibility '" A64 "': " VIS_RULE},
};

Test(api_request, refuses_bad_visibility_bodies_with_their_message)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_visibility); i++) {
        const char *body = bad_visibility[i].body;
        struct eph_err err = {0};
        enum visibility vis = VIS_LINK;

        cr_expect_eq(api__parse_visibility(body, strlen(body), &vis, &err), EPH_EINVAL, "case %zu",
                     i);
        cr_expect_str_eq(err.msg, bad_visibility[i].want, "case %zu", i);
    }
}

Test(api_request, takes_every_visibility)
{
    static const struct {
        const char *body;
        enum visibility want;
    } cases[] = {
        {"{\"visibility\": \"team\"}", VIS_TEAM},
        {"{\"visibility\": \"private\"}", VIS_PRIVATE},
        {"{\"visibility\": \"link\", \"other\": 1}", VIS_LINK},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct eph_err err = {0};
        enum visibility vis = VIS_TEAM;

        cr_assert_eq(api__parse_visibility(cases[i].body, strlen(cases[i].body), &vis, &err), 0,
                     "case %zu: %s", i, err.msg);
        cr_expect_eq(vis, cases[i].want, "case %zu", i);
    }
}

/* ------------------------------------------------------------- POST /users */

#define USER_RULE "expected 1 to 32 characters (a-z, 0-9 and '-' inside)"
#define EMAIL_RULE "expected an address like name@example.com"
#define A32 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct {
    const char *body, *want;
} bad_user[] = {
    /* types first, in the order name, role, email, password */
    {"{\"name\": 1}", "'name' must be a string"},
    {"{\"name\": \"bob\", \"role\": 1}", "'role' must be a string"},
    {"{\"name\": \"bob\", \"role\": \"root\"}", "invalid role 'root': " ROLE_RULE},
    {"{\"name\": \"bob\", \"role\": \"none\"}", "invalid role 'none': " ROLE_RULE},
    {"{\"name\": \"bob\", \"role\": \"Admin\"}", "invalid role 'Admin': " ROLE_RULE},
    {"{\"name\": \"BAD\", \"role\": \"root\"}", "invalid role 'root': " ROLE_RULE},
    {"{\"name\": \"bob\", \"email\": 5}", "'email' must be a string"},
    {"{\"name\": \"bob\", \"password\": 12345678}", "'password' must be a string"},
    {"{\"password\": 1}", "'password' must be a string"},
    /* then the name */
    {"{}", "'name' is required"},
    {"{\"name\": null, \"role\": \"admin\"}", "'name' is required"},
    {"{\"name\": \"\"}", "invalid user name '': " USER_RULE},
    {"{\"name\": \"Bob\"}", "invalid user name 'Bob': " USER_RULE},
    {"{\"name\": \"-bob\"}", "invalid user name '-bob': " USER_RULE},
    {"{\"name\": \"bob-\"}", "invalid user name 'bob-': " USER_RULE},
    {"{\"name\": \"b_b\"}", "invalid user name 'b_b': " USER_RULE},
    {"{\"name\": \"b.b\"}", "invalid user name 'b.b': " USER_RULE},
    {"{\"name\": \"b b\"}", "invalid user name 'b b': " USER_RULE},
    {"{\"name\": \"b\\u00f6b\"}", "invalid user name 'b\303\266b': " USER_RULE},
    {"{\"name\": \"" A32 "a\"}", "invalid user name '" A32 "a': " USER_RULE},
    {"{\"name\": \"" A100 "\"}", "invalid user name '" A64 "': " USER_RULE},
    {"{\"name\": \"system\"}", "the user name 'system' is reserved"},
    /* then the email */
    {"{\"name\": \"bob\", \"email\": \"bob\"}", "invalid email 'bob': " EMAIL_RULE},
    {"{\"name\": \"bob\", \"email\": \"@example.com\"}",
     "invalid email '@example.com': " EMAIL_RULE},
    {"{\"name\": \"bob\", \"email\": \"bob@\"}", "invalid email 'bob@': " EMAIL_RULE},
    {"{\"name\": \"bob\", \"email\": \"bob@a@b\"}", "invalid email 'bob@a@b': " EMAIL_RULE},
    {"{\"name\": \"bob\", \"email\": \"bob smith@x.org\"}",
     "invalid email 'bob smith@x.org': " EMAIL_RULE},
    {"{\"name\": \"bob\", \"email\": \"<bob@x.org>\"}", "invalid email '<bob@x.org>': " EMAIL_RULE},
    {"{\"name\": \"bob\", \"email\": \"bob@x.org\\n\"}",
     "invalid email 'bob@x.org\n': " EMAIL_RULE},
    /* then the password: at least 8 characters (not bytes) */
    {"{\"name\": \"bob\", \"password\": \"\"}", "the password is too short: at least 8 characters"},
    {"{\"name\": \"bob\", \"password\": \"1234567\"}",
     "the password is too short: at least 8 characters"},
    {"{\"name\": \"bob\", \"password\": \"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}",
     "the password is too short: at least 8 characters"},
    {"{\"name\": \"BAD\", \"email\": \"x\", \"password\": \"1\"}",
     "invalid user name 'BAD': " USER_RULE},
};

Test(api_request, refuses_bad_user_bodies_with_their_message)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_user); i++) {
        const char *body = bad_user[i].body;
        struct eph_err err = {0};
        struct api_user_add req;
        int rc = api__parse_user_add(body, strlen(body), &req, &err);

        cr_expect_eq(rc, EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad_user[i].want, "case %zu", i);
        cr_expect_null(req.name, "case %zu", i);
        cr_expect_null(req.password, "case %zu", i);
        api__user_add_release(&req);
    }
}

/* A body whose password member is `n` bytes of 'p'. */
static char *
body_with_password(const char *head, size_t n)
{
    char *pw = xmalloc(n + 1);
    char *body;

    memset(pw, 'p', n);
    pw[n] = '\0';
    body = xasprintf("{%s\"password\": \"%s\"}", head, pw);
    free(pw);
    return body;
}

Test(api_request, refuses_passwords_longer_than_1024_bytes)
{
    char *body = body_with_password("\"name\": \"bob\", ", 1025);
    char *ok_body = body_with_password("\"name\": \"bob\", ", 1024);
    char *lone = body_with_password("", 1025);
    struct eph_err err = {0};
    struct api_user_add req;
    char *password = NULL;

    cr_expect_eq(api__parse_user_add(body, strlen(body), &req, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "the password is too long: at most 1024 bytes");
    api__user_add_release(&req);
    cr_expect_eq(api__parse_password(lone, strlen(lone), &password, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "the password is too long: at most 1024 bytes");
    cr_expect_null(password);
    cr_assert_eq(api__parse_user_add(ok_body, strlen(ok_body), &req, &err), 0, "%s", err.msg);
    cr_expect_eq(strlen(req.password), 1024);
    api__user_add_release(&req);
    free(body);
    free(ok_body);
    free(lone);
}

Test(api_request, takes_a_user_body_with_its_defaults)
{
    static const char body[] = "{\"name\": \"bob\"}";
    struct eph_err err = {0};
    struct api_user_add req;

    cr_assert_eq(api__parse_user_add(body, strlen(body), &req, &err), 0, "%s", err.msg);
    cr_expect_str_eq(req.name, "bob");
    cr_expect_eq(req.role, ROLE_MEMBER, "member unless asked otherwise");
    cr_expect_null(req.email);
    cr_expect_null(req.password, "the handler makes one");
    api__user_add_release(&req);
    cr_expect_null(req.name);
    api__user_add_release(&req); /* twice is harmless */
}

Test(api_request, takes_a_full_user_body)
{
    static const char body[] =
        "{\"name\": \"a-0\", \"role\": \"viewer\", \"email\": \"a.b+c@example.com\","
        " \"password\": \"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\", \"x\": 1}";
    static const char *const names[] = {"a", "0", "a-b", A32, "9-z"};
    struct eph_err err = {0};
    struct api_user_add req;

    cr_assert_eq(api__parse_user_add(body, strlen(body), &req, &err), 0, "%s", err.msg);
    cr_expect_str_eq(req.name, "a-0");
    cr_expect_eq(req.role, ROLE_VIEWER);
    cr_expect_str_eq(req.email, "a.b+c@example.com");
    cr_expect_str_eq(req.password,
                     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
                     "8 characters are enough, whatever their bytes");
    api__user_add_release(&req);
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        cr_expect(api__user_name_valid(names[i]), "case %zu", i);
    cr_expect_not(api__user_name_valid(NULL));
    cr_expect_not(api__user_name_valid("a--"));
}

Test(api_request, takes_an_empty_email_as_none)
{
    static const char body[] = "{\"name\": \"bob\", \"email\": \"\", \"role\": null}";
    struct eph_err err = {0};
    struct api_user_add req;

    cr_assert_eq(api__parse_user_add(body, strlen(body), &req, &err), 0, "%s", err.msg);
    cr_expect_null(req.email);
    cr_expect_eq(req.role, ROLE_MEMBER);
    api__user_add_release(&req);
}

/* ------------------------------------------------------------- POST /users/{name}/role, /password
 */

static const struct {
    const char *body, *want;
} bad_role[] = {
    {"{}", "'role' is required, e.g. {\"role\": \"member\"}"},
    {"{\"role\": null}", "'role' is required, e.g. {\"role\": \"member\"}"},
    {"{\"role\": 3}", "'role' must be a string"},
    {"{\"role\": \"owner\"}", "invalid role 'owner': " ROLE_RULE},
    {"{\"role\": \"none\"}", "invalid role 'none': " ROLE_RULE},
    {"{\"role\": \"\"}", "invalid role '': " ROLE_RULE},
};

Test(api_request, refuses_bad_role_bodies_with_their_message)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_role); i++) {
        const char *body = bad_role[i].body;
        struct eph_err err = {0};
        enum role role = ROLE_ADMIN;

        cr_expect_eq(api__parse_role(body, strlen(body), &role, &err), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad_role[i].want, "case %zu", i);
    }
}

Test(api_request, takes_every_role)
{
    static const struct {
        const char *body;
        enum role want;
    } cases[] = {
        {"{\"role\": \"viewer\"}", ROLE_VIEWER},
        {"{\"role\": \"member\"}", ROLE_MEMBER},
        {"{\"role\": \"admin\"}", ROLE_ADMIN},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct eph_err err = {0};
        enum role role = ROLE_NONE;

        cr_assert_eq(api__parse_role(cases[i].body, strlen(cases[i].body), &role, &err), 0,
                     "case %zu: %s", i, err.msg);
        cr_expect_eq(role, cases[i].want, "case %zu", i);
    }
}

static const struct {
    const char *body, *want;
} bad_password[] = {
    {"{}", "'password' is required"},
    {"{\"password\": null}", "'password' is required"},
    {"{\"pass\": \"12345678\"}", "'password' is required"},
    {"{\"password\": 12345678}", "'password' must be a string"},
    {"{\"password\": \"\"}", "the password is too short: at least 8 characters"},
    {"{\"password\": \"1234567\"}", "the password is too short: at least 8 characters"},
};

Test(api_request, refuses_bad_password_bodies_with_their_message)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_password); i++) {
        const char *body = bad_password[i].body;
        struct eph_err err = {0};
        char *password = NULL;

        cr_expect_eq(api__parse_password(body, strlen(body), &password, &err), EPH_EINVAL,
                     "case %zu", i);
        cr_expect_str_eq(err.msg, bad_password[i].want, "case %zu", i);
        cr_expect_null(password, "case %zu", i);
    }
}

Test(api_request, takes_a_password_body)
{
    static const char body[] = "{\"password\": \"correct horse\"}";
    struct eph_err err = {0};
    char *password = NULL;

    cr_assert_eq(api__parse_password(body, strlen(body), &password, &err), 0, "%s", err.msg);
    cr_expect_str_eq(password, "correct horse");
    api__secret_free(password);
    api__secret_free(NULL);
}

/* ------------------------------------------------------------- POST /tokens */

#define TOKEN_NAME_RULE "expected 1 to 63 characters of a-z, A-Z, 0-9, '.', '_' and '-'"

static const struct {
    const char *body, *want;
} bad_token[] = {
    /* types first, in the order name, ttl, scope */
    {"{\"name\": 1}", "'name' must be a string"},
    {"{\"name\": \"ci\", \"ttl\": 30}", "'ttl' must be a string"},
    {"{\"name\": \"ci\", \"scope\": 1}", "'scope' must be a string"},
    {"{\"name\": \"ci\", \"scope\": \"root\"}", "invalid scope 'root': " ROLE_RULE},
    {"{\"name\": \"ci\", \"scope\": \"none\"}", "invalid scope 'none': " ROLE_RULE},
    {"{\"scope\": \"root\"}", "invalid scope 'root': " ROLE_RULE},
    /* then the name */
    {"{}", "'name' is required, e.g. {\"name\": \"ci\"}"},
    {"{\"name\": null, \"ttl\": \"1d\"}", "'name' is required, e.g. {\"name\": \"ci\"}"},
    {"{\"name\": \"\"}", "invalid token name '': " TOKEN_NAME_RULE},
    {"{\"name\": \"c i\"}", "invalid token name 'c i': " TOKEN_NAME_RULE},
    {"{\"name\": \"ci/x\"}", "invalid token name 'ci/x': " TOKEN_NAME_RULE},
    {"{\"name\": \"" A64 "\"}", "invalid token name '" A64 "': " TOKEN_NAME_RULE},
    {"{\"name\": \"BAD NAME\", \"ttl\": \"0s\"}",
     "invalid token name 'BAD NAME': " TOKEN_NAME_RULE},
    /* then the ttl: at most 365 days */
    {"{\"name\": \"ci\", \"ttl\": \"\"}", "'ttl': empty duration, expected e.g. 30m, 2h or 1h30m"},
    {"{\"name\": \"ci\", \"ttl\": \"forever\"}",
     "'ttl': invalid duration 'forever', expected e.g. 30m, 2h or 1h30m"},
    {"{\"name\": \"ci\", \"ttl\": \"0d\"}", "ttl 0d is not a positive duration"},
    {"{\"name\": \"ci\", \"ttl\": \"366d\"}", "ttl 366d exceeds the token maximum of 365d"},
    {"{\"name\": \"ci\", \"ttl\": \"365d1s\"}", "ttl 365d1s exceeds the token maximum of 365d"},
};

Test(api_request, refuses_bad_token_bodies_with_their_message)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_token); i++) {
        const char *body = bad_token[i].body;
        struct eph_err err = {0};
        struct api_token_create req;
        int rc = api__parse_token_create(body, strlen(body), &req, &err);

        cr_expect_eq(rc, EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad_token[i].want, "case %zu", i);
        cr_expect_null(req.name, "case %zu", i);
        api__token_create_release(&req);
    }
}

Test(api_request, takes_a_token_body_with_its_defaults)
{
    static const char body[] = "{\"name\": \"ci\"}";
    struct eph_err err = {0};
    struct api_token_create req;

    cr_assert_eq(api__parse_token_create(body, strlen(body), &req, &err), 0, "%s", err.msg);
    cr_expect_str_eq(req.name, "ci");
    cr_expect_eq(req.ttl_s, 90 * 86400, "90 days unless asked otherwise");
    cr_expect_eq(req.scope, ROLE_NONE, "the caller's role, which the handler knows");
    api__token_create_release(&req);
    cr_expect_null(req.name);
}

Test(api_request, takes_a_full_token_body)
{
    static const char body[] = "{\"name\": \"Deploy.bot_1-x\", \"ttl\": \"365d\", "
                               "\"scope\": \"viewer\"}";
    static const char long_name[] = "{\"name\": \"" A40 "aaaaaaaaaaaaaaaaaaaaaaa\"}"; /* 63 */
    struct eph_err err = {0};
    struct api_token_create req;

    cr_assert_eq(api__parse_token_create(body, strlen(body), &req, &err), 0, "%s", err.msg);
    cr_expect_str_eq(req.name, "Deploy.bot_1-x");
    cr_expect_eq(req.ttl_s, 365 * 86400);
    cr_expect_eq(req.scope, ROLE_VIEWER);
    api__token_create_release(&req);
    cr_assert_eq(api__parse_token_create(long_name, strlen(long_name), &req, &err), 0, "%s",
                 err.msg);
    cr_expect_eq(strlen(req.name), 63);
    api__token_create_release(&req);
}

/* ------------------------------------------------------------- POST /envs/{name}/links */

static const struct {
    const char *body, *want;
} bad_link[] = {
    {"{\"ttl\": 3600}", "'ttl' must be a string"},
    {"{\"ttl\": \"1h\", \"service\": 1}", "'service' must be a string"},
    {"{\"service\": \"\"}", "'service' must not be empty"},
    {"{\"service\": \"\", \"ttl\": \"nope\"}", "'service' must not be empty"},
    {"{\"ttl\": \"\"}", "'ttl': empty duration, expected e.g. 30m, 2h or 1h30m"},
    {"{\"ttl\": \"nope\"}", "'ttl': invalid duration 'nope', expected e.g. 30m, 2h or 1h30m"},
    {"{\"ttl\": \"0s\"}", "ttl 0s is not a positive duration"},
    {"{\"ttl\": \"8d\"}", "ttl 8d exceeds the server maximum of 7d"},
};

Test(api_request, refuses_bad_link_bodies_with_their_message)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_link); i++) {
        const char *body = bad_link[i].body;
        struct eph_err err = {0};
        struct api_link_create req;
        int rc = api__parse_link_create(body, strlen(body), MAX_TTL_S, &req, &err);

        cr_expect_eq(rc, EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad_link[i].want, "case %zu", i);
        cr_expect_null(req.ttl, "case %zu", i);
        cr_expect_null(req.service, "case %zu", i);
        api__link_create_release(&req);
    }
}

Test(api_request, takes_no_link_body_as_the_defaults)
{
    static const char *const bodies[] = {"", "{}", "{\"ttl\": null, \"service\": null}"};

    for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
        struct eph_err err = {0};
        struct api_link_create req;

        cr_assert_eq(api__parse_link_create(bodies[i], strlen(bodies[i]), MAX_TTL_S, &req, &err), 0,
                     "case %zu: %s", i, err.msg);
        cr_expect_str_eq(req.ttl, "24h", "case %zu", i);
        cr_expect_eq(req.ttl_s, 86400, "case %zu", i);
        cr_expect_null(req.service, "case %zu", i);
        api__link_create_release(&req);
    }
}

Test(api_request, takes_a_link_body_and_caps_the_default_at_max_ttl)
{
    static const char body[] = "{\"ttl\": \"2h\", \"service\": \"web\"}";
    struct eph_err err = {0};
    struct api_link_create req;

    cr_assert_eq(api__parse_link_create(body, strlen(body), MAX_TTL_S, &req, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(req.ttl, "2h");
    cr_expect_eq(req.ttl_s, 7200);
    cr_expect_str_eq(req.service, "web");
    api__link_create_release(&req);
    /* A server whose environments live an hour at most: links too. */
    cr_assert_eq(api__parse_link_create("", 0, 3600, &req, &err), 0, "%s", err.msg);
    cr_expect_str_eq(req.ttl, "1h");
    cr_expect_eq(req.ttl_s, 3600);
    api__link_create_release(&req);
    cr_expect_eq(api__parse_link_create(body, strlen(body), 3600, &req, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "ttl 2h exceeds the server maximum of 1h");
    api__link_create_release(&req);
}
