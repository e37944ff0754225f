"""The didkit adapter hides the library's traps: lazy import, fork safety, clean exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "cleanroom.settings"},
    )


def test_importing_identity_does_not_load_didkit():
    result = run_python(
        """
        import django, sys
        django.setup()
        import identity.vc, identity.verification, identity.services, identity.api, identity.portal
        import identity.wallet.cli, identity.issuer.cli, identity.demo, cleanroom.urls
        print("didkit" in sys.modules, identity.vc.is_loaded())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_a_short_lived_process_that_used_didkit_exits_cleanly():
    result = run_python(
        """
        from identity import vc
        key = vc.key_generate()
        print(vc.did_resolve(vc.key_did(key))["id"].startswith("did:key:"))
        """
    )
    assert result.returncode == 0, result.stderr  # without the atexit guard this can segfault
    assert result.stdout.strip() == "True"


def test_forked_child_of_a_process_that_used_didkit_fails_fast_not_hangs():
    result = run_python(
        """
        import os
        from identity import vc
        vc.key_did(vc.key_generate())
        vc.did_resolve("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp")
        pid = os.fork()
        if pid == 0:
            try:
                vc.did_resolve("did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG")
                os._exit(3)
            except vc.BackendError as exc:
                os._exit(7 if "before it forked" in str(exc) else 4)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7"


def test_fork_before_first_use_works_in_the_child():
    """Celery prefork and gunicorn workers: the parent never used didkit, the children may."""
    result = run_python(
        """
        import os
        from identity import vc
        pid = os.fork()
        if pid == 0:
            ok = vc.did_resolve(vc.key_did(vc.key_generate()))["id"].startswith("did:key:")
            os._exit(0 if ok else 5)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_verify_errors_are_returned_not_raised():
    from identity import vc

    assert vc.credential_verify("{not json") and vc.credential_verify({"proof": {}})


@pytest.mark.parametrize("concurrency", [8])
def test_concurrent_callers_share_the_loop(concurrency):
    from concurrent.futures import ThreadPoolExecutor

    from identity import vc

    with ThreadPoolExecutor(concurrency) as pool:
        dids = list(
            pool.map(lambda _: vc.did_resolve(vc.key_did(vc.key_generate()))["id"], range(32))
        )
    assert len(set(dids)) == 32
