#!/usr/bin/env python3
"""Run gevent's own tests on fastco's switch and on real greenlet, and compare.

    python .ci/gevent_suite.py [--python PY] [--pure-python] [--files F,...]
        [--jobs N] [--workdir DIR] [--json OUT]

gevent's tests ship in its wheel (the package ``gevent.tests``).  This script
installs gevent (the wheel of GEVENT_VERSION, from the package index: nothing
of gevent's is ever committed here) with pip into a directory of its own
outside the checkout (--gevent-dir; see install_gevent for why), then runs
each test file of FILES twice, as gevent's own runner does
(``PY -u -m gevent.tests.test__X``, one process per file, with the
environment and per-file timeout gevent's runner gives it): once with the
real greenlet, once with FASTCO_AS_GREENLET=1, so that ``import greenlet``
gives fastco's module and gevent's hub and greenlets are fastco greenlets.
The two runs of a file go side by side (in a pool of --jobs processes), so
that both see about the same load.

Every test's outcome is recorded by a hook that the test processes load
(sitecustomize.py, written to the work directory: it wraps unittest's
TextTestResult, which gevent's tests report through), plus each process's
exit status, which is the only outcome of the files that are plain scripts
(test__sleep0, test__GreenletExit).  Each process also reports which
greenlet it imported and whether gevent's compiled modules ran: a run that
did not get the implementation it asked for is an error, not a result.

--pure-python sets PURE_PYTHON=1 for both runs (gevent's Python code only;
fastco can serve it without greenlet's C API).  Without it gevent's compiled
modules run, which on fastco needs the capsule ``greenlet._C_API``.

Exit status: 0 when every test (and every process) that passes on greenlet
passes on fastco too, 1 otherwise, 2 when the suite could not be set up.
The file of a test that fails on fastco only is run again once on fastco,
alone (gevent's own runner has such a second chance, for its many tests
that time things); a test that passes then is reported as flaky and does
not fail the run.  Tests that fail
on greenlet too are reported, not held against fastco.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

GEVENT_VERSION = "26.9.0"
IMPLS = ("greenlet", "fastco")

#: The files run by default (issue 12): about 890 tests.
DEFAULT_FILES = (
    "test__greenlet test__event test__queue test__lock test__semaphore test__pool "
    "test__timeout test__sleep0 test__joinall test__hub test__socket test__server "
    "test__pywsgi test__local test__monkey test__threading test__subprocess test__ssl "
    "test__select test__selectors test__iwait test__api test__exc_info test__contextvars "
    "test__GreenletExit test__greenletset test__threadpool test__monkey_queue "
    "test__socket_ssl test__example_echoserver").split()

#: Files whose greenlet and fastco runs cannot overlap, beside those gevent's
#: configuration runs alone: gevent's examples listen on fixed ports.
ALONE = {"test__example_echoserver"}

#: The files that take longest (10-30 s each here): started first.
SLOW = {"test__pool", "test__threadpool", "test__ssl", "test__subprocess"}

#: The key of a process's own outcome (its exit status), beside its tests'.
PROCESS = "(process)"

# ---------------------------------------------------------------------------
# The hook loaded by the test processes


#: sitecustomize.py of the test processes.  It imports nothing at start but
#: importlib.util (gevent's monkey-patching tests care what is imported before
#: them): it wraps unittest.runner.TextTestResult when unittest.runner is
#: first imported.  GEVENT_SUITE_RESULTS is taken out of the environment, so
#: that the processes a test starts do not write into the file.
SITECUSTOMIZE = r'''
import os, sys

_results = os.environ.pop("GEVENT_SUITE_RESULTS", None)


def _emit(**event):
    import json
    with open(_results, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


def _short(test):
    name = test.id()
    for prefix in ("__main__.", "gevent.tests."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _wrap(runner):
    import traceback
    cls = runner.TextTestResult
    state = {}

    def failed(test, kind, err):
        if state.get(test.id()) is None:
            text = "".join(traceback.format_exception(*err)) if err[0] else str(err[1])
            state[test.id()] = (kind, text[-4000:])

    def wrap(name, action):
        orig = getattr(cls, name)

        def method(self, test, *args):
            action(test, *args)
            return orig(self, test, *args)
        setattr(cls, name, method)

    def start(test):
        state[test.id()] = None
        _emit(event="start", id=_short(test))

    def stop(test):
        kind, detail = state.pop(test.id(), None) or ("pass", "")
        _emit(event="end", id=_short(test), outcome=kind, detail=detail)

    def subtest(test, sub, err):
        if err is not None:
            failed(test, "fail", err)

    def unexpected(test):
        failed(test, "fail", (None, "unexpected success", None))

    def skip(test, reason):
        if state.get(test.id()) is None:
            state[test.id()] = ("skip", str(reason))

    wrap("startTest", start)
    wrap("stopTest", stop)
    wrap("addError", lambda t, err: failed(t, "error", err))
    wrap("addFailure", lambda t, err: failed(t, "fail", err))
    wrap("addSubTest", subtest)
    wrap("addUnexpectedSuccess", unexpected)
    wrap("addSkip", skip)


def _at_exit():
    g = sys.modules.get("greenlet")
    if g is None:
        return
    compiled = any(n.startswith("gevent._gevent_c") for n in list(sys.modules))
    gevent = sys.modules.get("gevent")
    _emit(event="impl", fastco=bool(getattr(g, "__fastco__", False)), compiled=compiled,
          gevent=getattr(gevent, "__file__", None))


class _RunnerHook:
    """Wraps unittest.runner as it is imported, then steps aside."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "unittest.runner":
            return None
        sys.meta_path.remove(cls)
        import importlib.util
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _wrap(module)
        spec.loader.exec_module = exec_module
        return spec


if _results:
    import atexit
    atexit.register(_at_exit)
    sys.meta_path.insert(0, _RunnerHook)
'''


# ---------------------------------------------------------------------------
# Setting up


def say(*args: object) -> None:
    print(*args, flush=True)


def setup_failed(why: str) -> NoReturn:
    """End the run with status 2: the suite could not be set up."""
    print(f"gevent_suite: {why}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def base_env() -> dict[str, str]:
    """The caller's environment without the switches this script sets."""
    env = dict(os.environ)
    for k in ("FASTCO_AS_GREENLET", "PURE_PYTHON", "GEVENT_SUITE_RESULTS"):
        env.pop(k, None)
    return env


def python_tag(python: str) -> str:
    """PY's ABI, as its cache tag (cpython-313)."""
    return subprocess.run([python, "-c", "import sys; print(sys.implementation.cache_tag)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def default_gevent_dir(python: str, version: str) -> Path:
    """Where gevent goes for PY: outside any checkout (see install_gevent),
    one directory per gevent version and interpreter ABI."""
    return Path(tempfile.gettempdir()) / f"fastco-gevent-{version}-{python_tag(python)}"


def fetch_sdist(python: str, workdir: Path, version: str) -> Path:
    """gevent's sdist, downloaded once into workdir (for every interpreter:
    pip prepares its metadata, which takes most of a minute)."""
    dl = workdir / "download"
    sdist = dl / f"gevent-{version}.tar.gz"
    if not sdist.is_file():
        cmd = [python, "-m", "pip", "download", "-q", "--no-binary", "gevent", "--no-deps",
               "--dest", str(dl), f"gevent=={version}"]
        say("+", " ".join(cmd))
        if subprocess.run(cmd, env=base_env()).returncode != 0:
            setup_failed(f"cannot download gevent {version}'s sdist")
    return sdist


def install_gevent(python: str, dest: Path, version: str, workdir: Path) -> None:
    """gevent's wheel at `version` installed into dest (pip --target, reused
    when there), with setup.py and examples/ of its sdist beside it.

    Not into PY's environment: gevent's example tests (test__example_echoserver)
    find gevent's examples/ by climbing from gevent's own files to a
    setup.py, and a venv inside a checkout (.venv, .ci/venv-*) would lead
    them to this repository's.  The test processes get dest first on
    PYTHONPATH; gevent's dependencies (greenlet, zope.event, zope.interface)
    come from PY's environment, which must hold fastco.  The sdist's
    examples are there because the wheel does not ship them."""
    probe = ("import importlib.util as u\n"
             "print(all(u.find_spec(m) is not None for m in "
             "('fastco', 'greenlet', 'zope.event', 'zope.interface')))\n")
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                           env=base_env(), check=True).stdout.strip()
    if found != "True":
        cmd = [python, "-m", "pip", "install", "-q", "greenlet", "zope.event", "zope.interface"]
        say("+", " ".join(cmd))
        if subprocess.run(cmd, env=base_env()).returncode != 0:
            setup_failed("cannot install gevent's dependencies")
        if subprocess.run([python, "-c", "import fastco"], env=base_env()).returncode != 0:
            setup_failed(f"fastco is not installed for {python}")
    ready = dest / ".gevent-suite-ready"
    if ready.is_file():
        return
    sdist = fetch_sdist(python, workdir, version)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    cmd = [python, "-m", "pip", "install", "-q", "--no-deps", "--only-binary", "gevent",
           "--target", str(tmp), f"gevent=={version}"]
    say("+", " ".join(cmd))
    if subprocess.run(cmd, env=base_env()).returncode != 0:
        shutil.rmtree(tmp)
        setup_failed(f"cannot install gevent {version}'s wheel")
    top = f"gevent-{version}/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers()
                   if m.name == top + "setup.py" or m.name.startswith(top + "examples/")]
        for m in members:
            m.name = m.name[len(top):]
        if hasattr(tarfile, "data_filter"):
            tar.extractall(tmp, members=members, filter="data")
        else:
            tar.extractall(tmp, members=members)   # noqa: S202 - a PyPI sdist
    (tmp / ready.name).write_text(version, encoding="utf-8")
    # Another run (a CI run of another checkout) may have made dest
    # meanwhile, and be using it: then keep its copy.
    try:
        tmp.rename(dest)
    except OSError:
        if ready.is_file():
            shutil.rmtree(tmp)
            return
        shutil.rmtree(dest)         # left half-made by a run that died
        tmp.rename(dest)


#: Run by PY (real greenlet): the environment gevent's runner gives its test
#: processes, and its command and options for each file.
PLAN = r'''
import json, os, sys
from gevent.testing import resources, testrunner
files = sys.argv[1:]
os.environ["GEVENTTEST_USE_RESOURCES"] = resources.unparse_resources(resources.parse_resources())
os.environ.setdefault("GEVENTTEST_QUIET", "True")
testrunner._setup_environ()
config = {}
path = testrunner._package_relative_filename("known_failures.py", "gevent.tests")
with open(path) as f:
    exec(f.read(), config)
found = testrunner.Discovery([f + ".py" for f in files], ignored=(), package="gevent.tests",
                             config=config, allow_combine=False)
plan = {}
for cmd, options in found:
    module = cmd[-1][2:] if cmd[-1].startswith("-m") else cmd[-1]
    plan[module.rsplit(".", 1)[-1]] = {"args": cmd[1:], "options": options}
print(json.dumps({"env": dict(os.environ), "plan": plan, "alone": config["RUN_ALONE"]}))
'''


def make_plan(python: str, files: list[str], env: dict[str, str]
              ) -> tuple[dict, dict, set[str]]:
    """(environment, {file: {"args": [...], "options": {...}}}, files to run
    alone) as gevent's runner would run them."""
    proc = subprocess.run([python, "-c", PLAN, *files], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        setup_failed(f"cannot plan the run:\n{proc.stderr}")
    data = json.loads(proc.stdout.splitlines()[-1])
    missing = [f for f in files if f not in data["plan"]]
    if missing:
        setup_failed(f"gevent {GEVENT_VERSION} has no {missing}")
    alone = {f for f in files if f in ALONE or f + ".py" in data["alone"]}
    return data["env"], data["plan"], alone


# ---------------------------------------------------------------------------
# Running one file on one implementation


@dataclass
class FileRun:
    """One test process: the outcome of each test, and of the process."""

    file: str
    impl: str
    outcomes: dict[str, dict] = field(default_factory=dict)
    impl_seen: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def read_events(path: Path) -> list[dict]:
    """The whole lines of a results file (a killed process may leave half of one)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n"):
            out.append(json.loads(line))
    return out


def run_file(python: str, impl: str, file: str, plan: dict, env: dict[str, str],
             rundir: Path, tag: str = "") -> FileRun:
    """Run one test file in a process of its own; its results and log go to rundir."""
    entry = plan[file]
    env = dict(env)
    if impl == "fastco":
        env["FASTCO_AS_GREENLET"] = "1"
    results = rundir / f"results-{impl}-{file}{tag}.jsonl"
    results.unlink(missing_ok=True)
    env["GEVENT_SUITE_RESULTS"] = str(results)
    env["DO_NOT_SETPGRP"] = "1"     # gevent's runner sets it when it makes the group
    options = entry["options"]
    env.update(options.get("env") or {})
    env.update(options.get("setenv") or {})
    timeout = float(options.get("timeout") or 100)
    cwd = rundir / f"cwd-{impl}"
    cwd.mkdir(exist_ok=True)
    run = FileRun(file, impl)
    started = time.monotonic()
    log_path = rundir / f"log-{impl}-{file}{tag}.txt"
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([python, *entry["args"]], env=env, cwd=cwd,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc: int | str = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = "hang"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)    # and whatever it left behind
            except ProcessLookupError:
                pass
            proc.wait()
    run.seconds = time.monotonic() - started
    running = set()
    for ev in read_events(results):
        if ev["event"] == "start":
            running.add(ev["id"])
        elif ev["event"] == "end":
            running.discard(ev["id"])
            run.outcomes[ev["id"]] = {"outcome": ev["outcome"], "detail": ev["detail"]}
        elif ev["event"] == "impl":
            run.impl_seen.append(ev)
    for test in running:
        run.outcomes[test] = {"outcome": "hang" if rc == "hang" else "crash",
                              "detail": f"the process ended in this test (status {rc})"}
    if rc == 0:
        run.outcomes[PROCESS] = {"outcome": "pass", "detail": ""}
    elif rc == "hang":
        run.outcomes[PROCESS] = {"outcome": "hang",
                                 "detail": f"killed after {timeout:.0f} s; log: {log_path}"}
    else:
        what = f"killed by signal {-rc}" if isinstance(rc, int) and rc < 0 else f"exit {rc}"
        run.outcomes[PROCESS] = {"outcome": "crash" if rc < 0 else "fail",
                                 "detail": f"{what}; log: {log_path}"}
    return run


def check_impl(run: FileRun, pure_python: bool, gevent_dir: Path) -> str | None:
    """Why `run` did not run on what it asked for, or None."""
    if not run.impl_seen and run.outcomes[PROCESS]["outcome"] == "pass":
        return f"{run.file} on {run.impl}: the process never imported greenlet"
    for seen in run.impl_seen:
        if seen["gevent"] and not seen["gevent"].startswith(str(gevent_dir) + os.sep):
            return f"{run.file} on {run.impl}: imported gevent from {seen['gevent']}"
        if seen["fastco"] != (run.impl == "fastco"):
            return (f"{run.file} on {run.impl}: import greenlet gave "
                    f"{'fastco' if seen['fastco'] else 'greenlet'}")
        if seen["compiled"] == pure_python:
            return (f"{run.file} on {run.impl}: gevent's compiled modules "
                    f"{'ran' if seen['compiled'] else 'did not run'}")
    return None


# ---------------------------------------------------------------------------
# Report


PASSING = ("pass", "skip")


def counts(outcomes: dict[str, dict]) -> Counter:
    return Counter(o["outcome"] for k, o in outcomes.items() if k != PROCESS)


def fmt_counts(c: Counter, process: dict | None, empty: str = "a script, no unittest tests"
               ) -> str:
    parts = [f"{c[k]} {k}" for k in ("pass", "skip", "fail", "error", "crash", "hang") if c[k]]
    failed = process is not None and process["outcome"] != "pass"
    text = ", ".join(parts) or ("no test ran" if failed else empty)
    if failed:
        text += f" [process: {process['detail'].split(';')[0]}]"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter (a venv with fastco installed; default: this one)")
    parser.add_argument("--pure-python", action="store_true",
                        help="PURE_PYTHON=1: gevent without its compiled modules, both runs")
    parser.add_argument("--files", default=",".join(DEFAULT_FILES),
                        help="comma-separated test files of gevent.tests")
    parser.add_argument("--jobs", type=int, default=4,
                        help="test processes at once (default: %(default)s; the tests mostly wait)")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).parent / "gevent-suite",
                        help="results and logs (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="write every outcome there")
    parser.add_argument("--gevent-version", default=GEVENT_VERSION)
    parser.add_argument("--gevent-dir", type=Path,
                        help="where gevent is installed (default: a directory of the "
                        "system's temporary directory, reused)")
    args = parser.parse_args()
    started = time.monotonic()
    files = [f.strip().removesuffix(".py") for f in args.files.split(",") if f.strip()]
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    python = args.python if os.sep not in args.python else os.path.abspath(args.python)

    gevent_dir = (args.gevent_dir or default_gevent_dir(python, args.gevent_version)).resolve()
    install_gevent(python, gevent_dir, args.gevent_version, workdir)
    env = base_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(gevent_dir), env.get("PYTHONPATH")]))
    if args.pure_python:
        env["PURE_PYTHON"] = "1"
    env, plan, alone = make_plan(python, files, env)
    # Results and logs of each interpreter and mode apart (CI runs several
    # interpreters in one checkout); the download is shared.
    rundir = workdir / f"{python_tag(python)}-{'pure' if args.pure_python else 'compiled'}"
    rundir.mkdir(exist_ok=True)
    site = rundir / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    mode = "PURE_PYTHON=1" if args.pure_python else "compiled"
    version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    say(f"gevent {args.gevent_version} ({mode}) tests on CPython {version}: "
        f"{len(files)} files, greenlet and fastco side by side")

    runs: dict[tuple[str, str], FileRun] = {}
    lock = threading.Lock()

    def task(file: str, impl: str) -> None:
        run = run_file(python, impl, file, plan, env, rundir)
        with lock:
            runs[file, impl] = run
            say(f"  {file:28} {impl:8} {run.seconds:5.1f} s  "
                f"{fmt_counts(counts(run.outcomes), run.outcomes.get(PROCESS))}")

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        # The slowest files first, so that the others fill the gaps.
        order = sorted((f for f in files if f not in alone), key=lambda f: f not in SLOW)
        futures = [pool.submit(task, f, i) for f in order for i in IMPLS]
        for fut in futures:
            fut.result()
    for file in files:
        if file in alone:
            for impl in IMPLS:
                task(file, impl)

    wrong = [why for run in runs.values() if (why := check_impl(run, args.pure_python, gevent_dir))]

    # Regressions: passed on greenlet, did not on fastco; one more try, alone.
    def regressions(file: str) -> list[str]:
        g, f = runs[file, "greenlet"].outcomes, runs[file, "fastco"].outcomes
        return sorted(t for t, o in g.items()
                      if o["outcome"] in PASSING and f.get(t, {}).get("outcome") not in PASSING)

    flaky: dict[str, dict] = {}
    failed: dict[str, dict] = {}
    for file in files:
        regs = regressions(file)
        if not regs:
            continue
        again = run_file(python, "fastco", file, plan, env, rundir, tag="-retry")
        log = rundir / f"log-fastco-{file}-retry.txt"
        for t in regs:
            first = runs[file, "fastco"].outcomes.get(
                t, {"outcome": "not run", "detail": f"(the process: {log})"})
            if again.outcomes.get(t, {}).get("outcome") in PASSING:
                flaky[f"{file}: {t}"] = first
            else:
                failed[f"{file}: {t}"] = again.outcomes.get(t, first)
        why = check_impl(again, args.pure_python, gevent_dir)
        if why:
            wrong.append(why)

    say("")
    say(f"gevent {args.gevent_version} ({mode}), CPython {version}: tests per file "
        "([process] when the file's process did not exit 0)")
    say("| file | greenlet | fastco |")
    say("|---|---|---|")
    total = {i: Counter() for i in IMPLS}
    for file in files:
        cells = []
        for impl in IMPLS:
            o = runs[file, impl].outcomes
            total[impl] += counts(o)
            cells.append(fmt_counts(counts(o), o.get(PROCESS)))
        say(f"| {file} | {cells[0]} | {cells[1]} |")
    say(f"| total | {fmt_counts(total['greenlet'], None, 'no tests')} | "
        f"{fmt_counts(total['fastco'], None, 'no tests')} |")
    ids = {(f, t) for (f, _), r in runs.items() for t in r.outcomes if t != PROCESS}
    g_pass = {(f, t) for f in files for t, o in runs[f, "greenlet"].outcomes.items()
              if t != PROCESS and o["outcome"] in PASSING}
    say(f"{len(ids)} tests; {len(g_pass)} pass or skip on greenlet; of those, "
        f"{len(failed)} fail on fastco, {len(flaky)} failed once and passed alone (flaky)")
    for name, o in flaky.items():
        say(f"  flaky on fastco: {name} (first: {o['outcome']})")
    for name, o in failed.items():
        say(f"\nFAILS ON FASTCO ONLY: {name}: {o['outcome']} {o['detail']}".rstrip())
    for why in wrong:
        say(f"\nWRONG IMPLEMENTATION: {why}")
    say(f"(logs: {rundir}; {time.monotonic() - started:.0f} s)")
    if args.json:
        out = {f"{impl}:{file}: {t}": o for (file, impl), r in runs.items()
               for t, o in r.outcomes.items()}
        args.json.write_text(json.dumps(out, indent=1, sort_keys=True), encoding="utf-8")
    return 1 if failed or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
