/*
 * tests/unit/core/test_config.c - settings: defaults, file, environment,
 * validation, repository allowlist.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "util/fs.h"

Test(config, has_defaults_that_validate)
{
    struct config cfg;
    struct eph_err err = {0};

    config_init(&cfg);
    cr_expect_eq(config_validate(&cfg, &err), 0, "%s", err.msg);
    cr_expect_str_eq(cfg.listen_host, "127.0.0.1");
    cr_expect_eq(cfg.listen_port, 8080);
    cr_expect_eq(cfg.port_lo, 20000);
    cr_expect_eq(cfg.port_hi, 29999);
    cr_expect_eq(cfg.default_ttl_s, 8 * 3600);
    cr_expect_eq(cfg.stop_grace_ms, 10000);
    config_release(&cfg);
}

Test(config, reads_a_file_then_the_environment)
{
    char path[] = "/tmp/eph-test-config-XXXXXX";
    int fd = mkstemp(path);
    const char *yaml = "listen: 127.0.0.1:9999\nport_range: 30000-30010\nmax_ttl: 1d\n";
    struct config cfg;
    struct eph_err err = {0};

    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    config_init(&cfg);
    cr_expect_eq(config_load_file(&cfg, path, &err), 0, "%s", err.msg);
    setenv("EPH_PORT_RANGE", "31000-31005", 1);
    cr_expect_eq(config_load_environment(&cfg, &err), 0, "%s", err.msg);
    unsetenv("EPH_PORT_RANGE");
    cr_expect_eq(config_validate(&cfg, &err), 0, "%s", err.msg);
    cr_expect_eq(cfg.listen_port, 9999);
    cr_expect_eq(cfg.port_lo, 31000);
    cr_expect_eq(cfg.max_ttl_s, 86400);
    config_release(&cfg);
    unlink(path);
}

Test(config, names_the_position_of_a_bad_setting_in_a_file)
{
    char path[] = "/tmp/eph-test-config-XXXXXX";
    int fd = mkstemp(path);
    const char *yaml = "listen: 127.0.0.1:9999\nstop_grace: soon\n";
    struct config cfg;
    struct eph_err err = {0};
    char want[256];

    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    config_init(&cfg);
    cr_expect_eq(config_load_file(&cfg, path, &err), EPH_EINVAL);
    snprintf(want, sizeof(want),
             "%s:2:1: stop_grace: invalid duration 'soon', expected e.g. 30m, 2h or 1h30m", path);
    cr_expect_str_eq(err.msg, want);
    config_release(&cfg);
    unlink(path);
}

Test(config, refuses_bad_values)
{
    static const struct { const char *key, *value, *want; } bad[] = {
        {"listen", "nocolon", "listen: 'nocolon' is not HOST:PORT"},
        {"listen", "127.0.0.1:99999", "listen: bad port in '127.0.0.1:99999'"},
        {"port_range", "30000-20000", "port_range: '30000-20000' is not LO-HI within 1024-65535"},
        {"port_range", "80-90", "port_range: '80-90' is not LO-HI within 1024-65535"},
        {"log_level", "loud", "log_level: 'loud' is not debug, info, warn or error"},
        {"default_ttl", "30d", "default_ttl is longer than max_ttl"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct config cfg;
        struct eph_err err = {0};
        config_init(&cfg);
        cr_assert_eq(config_set(&cfg, bad[i].key, bad[i].value, &err), 0, "%s", err.msg);
        cr_expect_lt(config_validate(&cfg, &err), 0, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        config_release(&cfg);
    }
    struct config cfg;
    struct eph_err err = {0};
    config_init(&cfg);
    cr_expect_eq(config_set(&cfg, "colour", "blue", &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "unknown setting 'colour'");
    config_release(&cfg);
}

Test(config, allows_only_repositories_matching_its_patterns)
{
    struct config cfg;
    struct eph_err err = {0};

    config_init(&cfg);
    cr_expect(config_repo_allowed(&cfg, "/anything"), "the default allows all");
    config_set(&cfg, "allowed_repos", "https://git.example.com/*, /srv/git/*", &err);
    cr_expect(config_repo_allowed(&cfg, "https://git.example.com/team/shop.git"));
    cr_expect(config_repo_allowed(&cfg, "/srv/git/shop"));
    cr_expect(!config_repo_allowed(&cfg, "https://evil.example/shop.git"));
    cr_expect(!config_repo_allowed(&cfg, "/home/me/shop"));
    config_release(&cfg);
}
