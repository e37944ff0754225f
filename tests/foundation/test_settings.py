import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DATABASE_URL": "postgres://app:secret@db.internal:5432/cleanroom",
    "CELERY_BROKER_URL": "redis://cache.internal:6379/0",
    "SECRET_KEY": "x" * 64 + "-production-secret-with-enough-entropy-9f8e7d6c5b4a",
    "ALLOWED_HOSTS": "cleanroom.example.org,api.cleanroom.example.org",
    "DEBUG": "false",
    "CLEANROOM_KEK": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def run_python(code: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_settings_come_from_the_environment() -> None:
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','cleanroom.settings'); django.setup();"
        "from django.conf import settings as s; d=s.DATABASES['default'];"
        "print(d['ENGINE'], d['HOST'], d['NAME'], s.CELERY_BROKER_URL, s.ALLOWED_HOSTS, s.DEBUG, s.CLEANROOM_KEK)"
    )
    out = run_python(code, PRODUCTION_ENV)
    assert out == (
        "django.db.backends.postgresql db.internal cleanroom redis://cache.internal:6379/0 "
        "['cleanroom.example.org', 'api.cleanroom.example.org'] False "
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    )


def test_defaults_are_embedded_sqlite_and_broker(tmp_path: Path) -> None:
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','cleanroom.settings'); django.setup();"
        "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE']); print(s.CELERY_BROKER_URL);"
        "print(s.DEBUG); print(len(s.CLEANROOM_KEK) > 40)"
    )
    out = run_python(code, {"CLEANROOM_VAR_DIR": str(tmp_path)}).splitlines()
    assert out[0] == "django.db.backends.sqlite3"
    assert out[1] == f"sqla+sqlite:///{tmp_path}/celery-broker.sqlite3"
    assert out[2] == "False"
    assert out[3] == "True"
    assert (tmp_path / "dev-kek").exists()


def test_check_deploy_passes_with_production_environment(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**clean, **PRODUCTION_ENV, "CLEANROOM_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
