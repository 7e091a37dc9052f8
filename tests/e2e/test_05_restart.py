"""test_05_restart.py - a restarted server adopts the environments of the last one."""
from conftest import http_get, proc_alive, wait_until


def assert_one_group_per_service(server, env, env_id):
    """Exactly one live process group per service (the one the API names), no
    setup still running, nothing of any other environment or service."""
    procs = server.processes()
    assert procs, "no process of environment %s" % env["name"]
    stray = [p for p in procs if p.env_id != env_id]
    assert stray == [], "processes of no environment: %s" % stray
    setups = [p for p in procs if p.is_setup]
    assert setups == [], "setup still running: %s" % setups
    for svc in env["services"]:
        groups = {p.pgid for p in procs if p.service == svc["name"]}
        assert groups == {svc["pid"]}, (svc, [p for p in procs if p.service == svc["name"]])
    names = {s["name"] for s in env["services"]}
    assert {p.service for p in procs} <= names, procs


def test_05_01_server_killed_mid_start_resumes_without_duplicates(shop):
    r = shop.eph("up", "shop", "--name", "crash", "-o", "json")
    assert r.rc == 0, str(r)
    env_id = wait_until(lambda: shop.env_id("crash"), 30, "the environment's directory")
    before = wait_until(lambda: [p for p in shop.processes(env_id=env_id) if not p.is_setup],
                        60, "a service process of the environment", 0.005)
    phase = shop.get("crash")["phase"]
    shop.kill()
    before = {p.pid: p for p in before + shop.processes(env_id=env_id)}

    shop.start()
    env = shop.wait_phase("crash", "ready", timeout=90)
    assert_one_group_per_service(shop, env, env_id)
    groups = {s["name"]: s["pid"] for s in env["services"]}
    for pid, p in before.items():
        # Adopted (still in the group the API names) or gone: never a second copy.
        if proc_alive(pid):
            assert p.is_setup is False and groups[p.service] == p.pgid, \
                "process %d (%s) from before the crash runs beside group %d" \
                % (pid, p.owner, groups.get(p.service, 0))
    api = next(s for s in env["services"] if s["name"] == "api")
    assert http_get(api["port"], "/api/info").json()["products"] == 5, \
        "killed in phase %s" % phase


def test_05_02_sigterm_leaves_environments_running_for_the_next_server(tiny):
    r = tiny.eph("up", "tiny", "--name", "keep", "--wait", "-o", "json")
    assert r.rc == 0, str(r)
    env = tiny.get("keep")
    env_id = tiny.env_id("keep")
    pid, port = env["services"][0]["pid"], env["services"][0]["port"]

    assert tiny.stop() == 0
    assert proc_alive(pid), "SIGTERM of the server stopped the environment"
    assert http_get(port, "/").status_code == 200

    tiny.start()
    again = tiny.wait_phase("keep", "ready", timeout=60)
    assert again["services"][0]["pid"] == pid, (env, again)     # adopted, not restarted
    assert again["services"][0]["port"] == port
    assert_one_group_per_service(tiny, again, env_id)
