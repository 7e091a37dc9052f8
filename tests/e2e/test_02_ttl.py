"""test_02_ttl.py - environments expire on their own."""
from conftest import wait_until


def test_02_01_environment_is_deleted_when_its_ttl_passes(tiny):
    r = tiny.eph("up", "tiny", "--name", "short", "--ttl", "3s", "-o", "json")
    assert r.rc == 0, str(r)
    env = tiny.get("short")
    assert abs(env["expires_at_ms"] - env["created_at_ms"] - 3000) < 1000, env
    env_id = wait_until(lambda: tiny.env_id("short"), 30, "the environment's directory")
    wait_until(lambda: tiny.processes(env_id=env_id), 30, "a process of the environment")

    wait_until(lambda: not any(e["name"] == "short" for e in tiny.envs()), 30,
               "the expired environment to be deleted", 0.1)
    gone = [e for e in tiny.envs(all=True) if e["name"] == "short"]
    assert [e["phase"] for e in gone] == ["deleted"], gone
    assert tiny.processes(env_id=env_id) == []
    assert tiny.env_dir("short") is None

    actions = [e["action"] for e in tiny.events(target="env/short")]
    assert "env.expire" in actions, actions
    assert actions.index("env.create") < actions.index("env.expire"), actions
    assert "env.delete" not in actions, "nobody asked for a delete: %s" % actions
