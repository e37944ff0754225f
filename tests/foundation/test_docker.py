"""No Docker engine runs here: check that the production files are complete and consistent."""

from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def test_compose_defines_the_production_services() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat"}
    assert "command" not in services["web"]  # the image CMD: gunicorn
    assert services["worker"]["command"][:3] == ["celery", "-A", "cleanroom"]
    assert services["beat"]["command"][3] == "beat"
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--no-input"]
    for name in ("web", "worker", "beat"):
        assert (
            services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )
        env = services[name]["environment"]
        assert {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "CLEANROOM_KEK"} <= set(env)


def test_dockerfile_serves_with_gunicorn_as_a_non_root_user() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert "USER cleanroom" in dockerfile
    assert 'CMD ["gunicorn", "cleanroom.wsgi"' in dockerfile
