"""test_04_sources.py - environments from branches of a real git repository."""
import re

from conftest import http_get, wait_until


def assert_nothing_created(server):
    assert server.envs(all=True) == []
    r = server.eph("ls", "-o", "json")
    assert r.rc == 0, str(r)
    listed = r.json()
    assert (listed.get("envs") if isinstance(listed, dict) else listed) == [], listed
    envs_dir = server.data_dir / "envs"
    assert not envs_dir.exists() or list(envs_dir.iterdir()) == []
    assert server.processes() == []


def test_04_01_branch_is_checked_out_at_its_commit(shop, repos):
    r = shop.eph("up", "shop", "--branch", "feature-x", "--name", "fx", "--wait", "-o", "json")
    assert r.rc == 0, str(r)
    env = shop.get("fx")
    assert env["phase"] == "ready", env
    assert env["ref"] == "feature-x"
    assert env["commit"] == repos.shas["feature-x"]
    assert env["params"] == {"dataset": "natural"}          # the template's default
    assert (shop.env_dir("fx") / "src" / "FEATURE").read_text() == "feature x\n"
    api = next(s for s in env["services"] if s["name"] == "api")
    info = http_get(api["port"], "/api/info").json()
    assert (info["env"], info["dataset"], info["products"]) == ("fx", "natural", 5)


def test_04_02_unknown_branch_is_refused(shop):
    r = shop.eph("up", "shop", "--branch", "nope", "--name", "nope")
    assert r.rc == 1, str(r)
    assert "unknown branch 'nope'" in r.err, r.err
    assert r.err.startswith("eph: "), r.err
    wait_until(lambda: 'msg="env create refused"' in shop.log_text(), 10,
               'msg="env create refused" in the server log')
    line = next(l for l in shop.log_text().splitlines() if 'msg="env create refused"' in l)
    assert "mod=api" in line and "nope" in line, line
    assert_nothing_created(shop)


def test_04_03_bad_template_is_refused_with_its_position(shop, repos):
    r = shop.eph("up", "shop", "--branch", "bad-template", "--name", "bad")
    assert r.rc == 1, str(r)
    m = re.search(r"ephemera\.yaml:(\d+):(\d+): unknown service 'apii'", r.err)
    assert m, r.err
    assert int(m.group(1)) == repos.bad_line, (r.err, repos.bad_line)
    assert int(m.group(2)) in repos.bad_cols, (r.err, repos.bad_cols)
    assert_nothing_created(shop)


def test_04_04_param_outside_allowed_values_is_refused(shop):
    r = shop.eph("up", "shop", "--name", "odd", "--param", "dataset=huge")
    assert r.rc == 1, str(r)
    assert "dataset" in r.err and r.err.startswith("eph: "), r.err
    assert_nothing_created(shop)
