#!/usr/bin/env python3
"""Run greenlet's own test suite against fastco's ``greenlet`` module.

    python .ci/greenlet_suite.py [--python PY] [--impl fastco|greenlet] [--workdir DIR]

greenlet's tests ship in its sdist (src/greenlet/tests).  This script
downloads that sdist with pip (nothing of greenlet's is ever committed
here), extracts it, installs the suite's own dependencies (psutil, objgraph)
into PY's environment if they are missing, and runs every test under PY with
FASTCO_AS_GREENLET=1, so that ``import greenlet`` gives fastco's module, as a
user's program would get it.  ``--impl greenlet`` runs the same tests on the
real greenlet instead (installed at the same version): the comparison that
tells an environmental failure from fastco's.

Tests that cannot apply to fastco are listed in NOT_APPLICABLE below, each
with its reason, and are not run; every other test must pass.  The tests run
in a child process that reports each test as it starts and ends: a test that
crashes the process or hangs (--timeout) is reported as such, and the
remaining tests go on in a new child.  Exit status: 0 when every test run
passed (or skipped itself), 1 otherwise, 2 when the suite could not be set up.

PY is any CPython 3.10+ with fastco installed (a venv: pip installs into it);
nothing here depends on where it lives.
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
import time
from pathlib import Path

GREENLET_VERSION = "3.5.6"
PACKAGE = "greenlet.tests"

#: Tests of greenlet's suite that have no meaning for fastco, by id prefix
#: (module, module.Class or module.Class.test), with the reason.  The one
#: place where they are listed.
NOT_APPLICABLE: dict[str, str] = {
    # Not the C API: the moment a module's objects are destroyed at exit.
    "test_interpreter_shutdown.TestInterpreterShutdown.test_switch_no_error_at_module_gc_time":
        "its __del__ hangs off greenlet._greenlet, which is a Python module with fastco (an "
        "extension with greenlet) and is cleared later at exit, after __main__'s globals, so "
        "the test's print() no longer resolves; the switch from __del__ at module teardown "
        "itself works (tests/test_greenlet_compat.py)",
    # greenlet's internals, which fastco does not have.
    "test_greenlet.TestBrokenGreenlets.test_failed_to_initialstub":
        "UnswitchableGreenlet: greenlet's test-only subclass whose low-level stack switch "
        "fails on request (its slp_switch)",
    "test_greenlet.TestBrokenGreenlets.test_failed_to_switch_into_running":
        "UnswitchableGreenlet (see test_failed_to_initialstub)",
    "test_greenlet.TestBrokenGreenlets.test_failed_to_slp_switch_into_running":
        "UnswitchableGreenlet (see test_failed_to_initialstub), in a child process",
    "test_stack_saved":
        "greenlet copies stacks and counts the bytes in _stack_saved; fastco gives each "
        "greenlet its own stack and copies nothing (_stack_saved is always 0)",
    # fastco's deliberate difference at thread exit (README, "Where fastco differs
    # from greenlet"): a thread's suspended greenlets are killed on that thread as it
    # exits, where greenlet abandons them (their finally blocks never run, they leak).
    "test_greenlet.TestGreenlet.test_throw_to_dead_thread_doesnt_crash":
        "reads the frame of a greenlet its thread abandoned at exit, and expects that "
        "greenlet to leak (fails_leakcheck): fastco killed it at thread exit (it has no "
        "frame left, nothing leaks); the _wait variant of the test passes",
    "test_leaks.TestLeaks.test_untracked_memory_doesnt_increase_unfinished_thread_dealloc"
    "_in_main":
        "asserts that the greenlets left suspended by a thread that exited never get "
        "GreenletExit; fastco throws it into each at thread exit (its memory check: "
        "tests/test_memory.py::test_threads_with_suspended_coroutines_leave_rss_flat)",
    "test_leaks.TestLeaks.test_issue251_issue252_need_to_collect_in_background":
        "marked fails_leakcheck: passes only if greenlet's leak of a thread's abandoned "
        "greenlet shows; fastco kills it at thread exit and nothing leaks",
    "test_leaks.TestLeaks.test_issue251_issue252_need_to_collect_in_background_cleanup"
    "_disabled":
        "marked fails_leakcheck (see test_issue251_issue252_need_to_collect_in_background)",
    "test_leaks.TestLeaks.test_issue251_issue252_explicit_reference_not_collectable":
        "marked fails_leakcheck (see test_issue251_issue252_need_to_collect_in_background)",
    # The environment, not the module.
    "test_version":
        "runs greenlet's own setup.py --version and compares it with greenlet.__version__: "
        "it depends on the setuptools at hand (it fails the same way on real greenlet), not "
        "on the module; tests/test_as_greenlet.py checks __version__",
}


#: Tests that need greenlet's test-only C++ extension (_test_extension_cpp):
#: not run only where it cannot be built (no C++ compiler; see build_extensions).
NEEDS_CPP: dict[str, str] = {
    "test_cpp":
        "needs _test_extension_cpp, greenlet's test-only C++ extension, which could not be "
        "built here (no C++ compiler?)",
    "test_greenlet.TestGreenlet.test_get_stack_with_nested_c_calls":
        "needs _test_extension_cpp (see test_cpp)",
}


def is_not_applicable(test_id: str, table: dict[str, str] = NOT_APPLICABLE) -> str | None:
    """The reason test_id is listed in `table` (NOT_APPLICABLE), or None."""
    for prefix, reason in table.items():
        if test_id == prefix or test_id.startswith(prefix + "."):
            return reason
    return None


# ---------------------------------------------------------------------------
# Setting up: the sdist, the suite's dependencies


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command, echoing it; raise SystemExit(2) if it fails."""
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, text=True, **kwargs)
    if proc.returncode != 0:
        raise SystemExit(f"greenlet_suite: {cmd[0]} ... failed with status {proc.returncode}")
    return proc


def fetch_tests(python: str, workdir: Path, version: str) -> Path:
    """greenlet's sdist extracted under workdir (downloaded once); returns the
    directory that holds its ``greenlet`` package (src/)."""
    root = workdir / f"greenlet-{version}"
    src = root / "src"
    if (src / "greenlet" / "tests" / "__init__.py").is_file():
        return src
    dl = workdir / "download"
    dl.mkdir(parents=True, exist_ok=True)
    sdist = dl / f"greenlet-{version}.tar.gz"
    if not sdist.is_file():
        run([python, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
             "--dest", str(dl), f"greenlet=={version}"])
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(workdir, filter="data")
        else:
            tar.extractall(workdir)   # noqa: S202 - a PyPI sdist, python < 3.10.12
    return src


#: greenlet's test-only extensions, in the sdist's tests directory: C code
#: that calls greenlet's C API through greenlet.h (the capsule greenlet._C_API)
#: and, for the C++ one, C++ exceptions crossing switches.  greenlet's setup.py
#: builds them; here they are built with PY's compiler settings, so that they
#: run against whichever greenlet module PY imports.
EXTENSIONS = {
    "_test_extension": ("_test_extension.c", "CC", []),
    "_test_extension_cpp": ("_test_extension_cpp.cpp", "CXX", ["-std=c++11"]),
}

BUILD_INFO = """\
import json, sysconfig
v = sysconfig.get_config_var
print(json.dumps({"include": sysconfig.get_paths()["include"], "suffix": v("EXT_SUFFIX"),
                  "CC": v("CC") or "cc", "CXX": v("CXX") or "c++"}))
"""


def build_extensions(python: str, src: Path) -> set[str]:
    """Build greenlet's test extensions (EXTENSIONS) next to its tests, for
    PY; returns the names of those that are built.  A compiler that is
    missing or fails leaves that extension out, with a message."""
    import shlex

    info = json.loads(subprocess.run([python, "-c", BUILD_INFO], capture_output=True,
                                     text=True, check=True).stdout)
    tests = src / "greenlet" / "tests"
    built = set()
    for name, (source, compiler, flags) in EXTENSIONS.items():
        out = tests / (name + info["suffix"])
        if out.is_file() and out.stat().st_mtime >= (tests / source).stat().st_mtime:
            built.add(name)
            continue
        cmd = [*shlex.split(info[compiler]), "-shared", "-fPIC", "-O2", *flags,
               "-I" + info["include"], str(tests / source), "-o", str(out)]
        print("+", " ".join(cmd), flush=True)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            print(f"greenlet_suite: cannot build {name}: {e}", flush=True)
            continue
        if proc.returncode != 0:
            print(f"greenlet_suite: cannot build {name}:\n{proc.stderr[-3000:]}", flush=True)
            continue
        built.add(name)
    return built


def ensure_requirements(python: str, impl: str, version: str) -> None:
    """Install what the suite imports (psutil, objgraph) into PY's
    environment if missing; for --impl greenlet, greenlet at `version`."""
    probe = ("import importlib.metadata as m, importlib.util as u\n"
             "print(u.find_spec('psutil') is not None and u.find_spec('objgraph') is not None)\n"
             "try: print(m.version('greenlet'))\n"
             "except m.PackageNotFoundError: print('')\n")
    env = dict(os.environ)
    env.pop("FASTCO_AS_GREENLET", None)
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                         env=env, check=True).stdout.split("\n")
    wanted = []
    if out[0] != "True":
        wanted += ["psutil", "objgraph"]
    if impl == "greenlet" and out[1] != version:
        wanted.append(f"greenlet=={version}")
    if wanted:
        run([python, "-m", "pip", "install", "-q", *wanted])


#: sitecustomize.py of the processes that run the tests: makes the package
#: ``greenlet.tests`` the sdist's tests directory, in them and in the
#: processes they start (test_interpreter_shutdown's scripts import it),
#: without importing greenlet early.
SITECUSTOMIZE = """\
import importlib.util, os, sys

class _SuiteTests:
    tests = os.path.join(os.environ["GREENLET_SUITE_SRC"], "greenlet", "tests")

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "greenlet.tests":
            return None
        return importlib.util.spec_from_file_location(
            name, os.path.join(cls.tests, "__init__.py"),
            submodule_search_locations=[cls.tests])

sys.meta_path.insert(0, _SuiteTests)
"""


def child_env(impl: str, workdir: Path, src: Path) -> dict[str, str]:
    """The environment of the processes the tests run in (and the tests'
    own child processes, which inherit it)."""
    site = workdir / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env = dict(os.environ)
    env.pop("FASTCO_AS_GREENLET", None)
    if impl == "fastco":
        env["FASTCO_AS_GREENLET"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    env["PYTHONPATH"] = str(site)
    env["GREENLET_SUITE_SRC"] = str(src)
    return env


# ---------------------------------------------------------------------------
# The child: runs tests, reports each one to a file as it starts and ends


def child_main(impl: str, src: str, ids_file: str, results_file: str) -> int:
    """Runs the tests named in ids_file (all when empty), appending one JSON
    line per event to results_file."""
    import traceback
    import unittest

    import greenlet
    import greenlet.tests

    provided = getattr(greenlet, "__fastco__", False)
    if provided != (impl == "fastco"):
        sys.exit(f"greenlet_suite: import greenlet gave {greenlet.__file__}, "
                 f"not the {impl} implementation")
    if not greenlet.tests.__file__.startswith(src):
        sys.exit(f"greenlet_suite: greenlet.tests is {greenlet.tests.__file__}, not {src}'s")

    out = open(results_file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def emit(**event: object) -> None:
        out.write(json.dumps(event) + "\n")

    def short(test: unittest.TestCase) -> str:
        return test.id().removeprefix(PACKAGE + ".")

    class Result(unittest.TestResult):
        """Reports each test, its subtests folded into it."""

        def startTest(self, test: unittest.TestCase) -> None:
            super().startTest(test)
            self._failed = None
            emit(event="start", id=short(test), t=time.time())

        def _fail(self, kind: str, err: tuple) -> None:
            if self._failed is None:
                self._failed = (kind, "".join(traceback.format_exception(*err))[-6000:])

        def addError(self, test, err):  # type: ignore[no-untyped-def]
            super().addError(test, err)
            self._fail("error", err)

        def addFailure(self, test, err):  # type: ignore[no-untyped-def]
            super().addFailure(test, err)
            self._fail("fail", err)

        def addSubTest(self, test, subtest, err):  # type: ignore[no-untyped-def]
            super().addSubTest(test, subtest, err)
            if err is not None:
                self._fail("fail", err)

        def addSkip(self, test, reason):  # type: ignore[no-untyped-def]
            super().addSkip(test, reason)
            self._skip = reason

        def addUnexpectedSuccess(self, test):  # type: ignore[no-untyped-def]
            super().addUnexpectedSuccess(test)
            self._fail("fail", (AssertionError, AssertionError("unexpected success"), None))

        def stopTest(self, test: unittest.TestCase) -> None:
            super().stopTest(test)
            skip = getattr(self, "_skip", None)
            self._skip = None
            if self._failed is not None:
                emit(event="end", id=short(test), t=time.time(), outcome=self._failed[0],
                     detail=self._failed[1])
            elif skip is not None:
                emit(event="end", id=short(test), t=time.time(), outcome="skip", detail=skip)
            else:
                emit(event="end", id=short(test), t=time.time(), outcome="pass")

    with open(ids_file, encoding="utf-8") as f:
        wanted = [line.strip() for line in f if line.strip()]
    loader = unittest.TestLoader()
    if wanted:
        suite = unittest.TestSuite(loader.loadTestsFromName(PACKAGE + "." + i) for i in wanted)
    else:
        suite = loader.discover(os.path.join(src, "greenlet", "tests"),
                                top_level_dir=src)
    suite.run(Result())
    emit(event="done")
    out.close()
    return 0


def list_main(src: str) -> int:
    """Prints the Python version, then every test id of the suite.

    Two modules import greenlet's test-only extensions at their top:
    placeholders stand in for those here (the listing runs nothing), so that
    their tests are listed, and counted, even where one could not be built."""
    import types
    import unittest

    import greenlet.tests  # noqa: F401 - the placeholders go under it

    for name in ("_test_extension", "_test_extension_cpp"):
        sys.modules.setdefault(f"{PACKAGE}.{name}", types.ModuleType(f"{PACKAGE}.{name}"))
    suite = unittest.TestLoader().discover(os.path.join(src, "greenlet", "tests"),
                                           top_level_dir=src)

    def walk(s: unittest.TestSuite):
        for t in s:
            yield from walk(t) if isinstance(t, unittest.TestSuite) else [t]

    print(".".join(map(str, sys.version_info[:3])))
    for t in walk(suite):
        if isinstance(t, unittest.loader._FailedTest):
            sys.exit(f"cannot load {t.id()}: {t._exception}")
        print(t.id().removeprefix(PACKAGE + "."))
    return 0


def list_tests(python: str, env: dict[str, str], src: Path) -> tuple[str, list[str]]:
    """PY's version, and every test id of the suite."""
    proc = subprocess.run([python, os.path.abspath(__file__), "--list", str(src)],
                          capture_output=True, text=True, env=env, cwd=src.parent.parent)
    if proc.returncode != 0:
        raise SystemExit(f"greenlet_suite: cannot list the tests:\n{proc.stderr}")
    version, *ids = proc.stdout.split()
    return version, ids


# ---------------------------------------------------------------------------
# The parent: keeps a child running until every test has an outcome


def run_suite(python: str, impl: str, env: dict[str, str], src: Path, workdir: Path,
              ids: list[str], timeout: float, log) -> dict[str, dict]:
    """Outcome of each test id: {"outcome": pass|fail|error|skip|crash|hang, ...}."""
    results: dict[str, dict] = {}
    pending = list(ids)
    attempt = 0
    while pending:
        attempt += 1
        ids_file = workdir / f"ids-{impl}-{attempt}.txt"
        results_file = workdir / f"results-{impl}-{attempt}.jsonl"
        ids_file.write_text("\n".join(pending) + "\n", encoding="utf-8")
        results_file.write_text("", encoding="utf-8")
        cmd = [python, os.path.abspath(__file__), "--child", impl, str(src), str(ids_file),
               str(results_file)]
        proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        current: tuple[str, float] | None = None
        seen = 0
        done = False
        before = len(results)
        while True:
            # Polled before reading: once it has exited, all it wrote is read.
            status = proc.poll()
            # Whole lines only: a read may catch the child halfway through a write,
            # and a child that dies in one leaves a fragment.
            lines = results_file.read_text(encoding="utf-8").split("\n")[:-1]
            for line in lines[seen:]:
                event = json.loads(line)
                if event["event"] == "start":
                    current = (event["id"], time.monotonic())
                elif event["event"] == "end":
                    results[event["id"]] = event
                    current = None
                else:
                    done = True
            seen = len(lines)
            if status is not None:
                break
            if current is not None and time.monotonic() - current[1] > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                results[current[0]] = {"outcome": "hang",
                                       "detail": f"still running after {timeout:.0f} s: killed"}
                current = None
                break
            time.sleep(0.2)
        if current is not None:
            how = (f"killed by signal {signal.Signals(-status).name}" if status < 0
                   else f"exited with status {status}")
            results[current[0]] = {"outcome": "crash", "detail": f"the process {how}"}
        elif not done and len(results) == before:
            # It died before running any test: another child would too.
            if not results:
                raise SystemExit(f"greenlet_suite: the test process failed to start (status "
                                 f"{status}); see the log")
            for i in pending:
                results[i] = {"outcome": "error",
                              "detail": f"the test process exited ({status}) before it"}
        pending = [i for i in pending if i not in results]
        if done and pending:
            for i in pending:   # not found by the loader: should not happen
                results[i] = {"outcome": "error", "detail": "not run"}
            pending = []
    return results


def summarize(impl: str, version: str, py_version: str, ids: list[str],
              results: dict[str, dict], na: dict[str, str]) -> tuple[str, bool]:
    """A report of the run, and whether it is a success."""
    count: dict[str, int] = {}
    for r in results.values():
        count[r["outcome"]] = count.get(r["outcome"], 0) + 1
    bad = [i for i in ids if results.get(i, {}).get("outcome") in
           ("fail", "error", "crash", "hang")]
    lines = []
    for i in bad:
        r = results[i]
        lines.append(f"--- {r['outcome'].upper()}: {i}\n{r.get('detail', '').rstrip()}\n")
    skipped = sorted(i for i in ids if results.get(i, {}).get("outcome") == "skip")
    if skipped:
        lines.append("Skipped by the suite itself:")
        lines += [f"  {i}: {results[i].get('detail')}" for i in skipped]
    if na:
        lines.append("Not applicable (listed in .ci/greenlet_suite.py, not run):")
        lines += [f"  {i}: {reason}" for i, reason in sorted(na.items())]
    lines.append(
        f"greenlet {version} suite on {impl}, CPython {py_version}: "
        f"{count.get('pass', 0)} of {len(ids)} pass, "
        f"{len(na)} not applicable, {count.get('skip', 0)} skipped by the suite, "
        f"{count.get('fail', 0)} fail, {count.get('error', 0)} error, "
        f"{count.get('crash', 0)} crash, {count.get('hang', 0)} hang")
    return "\n".join(lines), not bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter to test with (default: this one)")
    parser.add_argument("--impl", choices=("fastco", "greenlet"), default="fastco")
    parser.add_argument("--greenlet-version", default=GREENLET_VERSION)
    parser.add_argument("--workdir", type=Path,
                        help="where to download and extract (kept; default: a temporary "
                             "directory)")
    parser.add_argument("--timeout", type=float, default=180,
                        help="seconds one test may run before it counts as a hang")
    parser.add_argument("--all", action="store_true",
                        help="also run the tests listed as not applicable")
    parser.add_argument("--json", type=Path, help="write every outcome here")
    parser.add_argument("tests", nargs="*",
                        help="test ids (module[.Class[.test]]) to run instead of all")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--list", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(*args.child)
    if args.list:
        return list_main(args.list)

    started = time.monotonic()
    # Absolute (the tests run elsewhere), but not resolved: a venv's python
    # is a symlink to the interpreter it was made from.
    found = shutil.which(args.python) if os.sep not in args.python else args.python
    if found is None:
        raise SystemExit(f"greenlet_suite: no interpreter {args.python!r}")
    args.python = os.path.abspath(found)
    tmp = None
    if args.workdir is None:
        tmp = args.workdir = Path(tempfile.mkdtemp(prefix="greenlet-suite-"))
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    src = fetch_tests(args.python, workdir, args.greenlet_version)
    env = child_env(args.impl, workdir, src)
    ensure_requirements(args.python, args.impl, args.greenlet_version)
    py_version, ids = list_tests(args.python, env, src)
    if args.tests:
        ids = [i for i in ids if any(i == t or i.startswith(t + ".") for t in args.tests)]
    table = dict(NOT_APPLICABLE)
    built = build_extensions(args.python, src)
    if "_test_extension" not in built:
        raise SystemExit("greenlet_suite: greenlet's test extension (C) could not be built")
    if "_test_extension_cpp" not in built:
        table.update(NEEDS_CPP)
    na = {} if args.all else {i: r for i in ids if (r := is_not_applicable(i, table))}
    to_run = [i for i in ids if i not in na]
    log_path = workdir / f"log-{args.impl}.txt"
    with open(log_path, "w", encoding="utf-8") as log:
        results = run_suite(args.python, args.impl, env, src, workdir, to_run, args.timeout,
                            log)
    for i in na:
        results[i] = {"outcome": "not applicable", "detail": na[i]}
    report, ok = summarize(args.impl, args.greenlet_version, py_version, ids, results, na)
    print(report)
    print(f"(the tests' output: {log_path}; {time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True), encoding="utf-8")
    if tmp is not None and ok:
        shutil.rmtree(tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
