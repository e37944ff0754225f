import pytest

from cleanroom.accounts.tasks import ping


@pytest.mark.worker
def test_task_round_trip_through_a_real_worker(worker, business_user) -> None:
    result = ping.delay("hello")
    assert result.get(timeout=30) == {"pong": "hello", "users": 1}
