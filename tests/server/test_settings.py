"""Settings read once from the environment, and the secret key kept safe on disk."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from server.settings import SettingsError, load_settings


def test_secret_key_is_generated_once_with_owner_only_permissions(tmp_path: Path) -> None:
    env = {"LIVEOP_DATA_DIR": str(tmp_path)}
    first = load_settings(env)
    assert load_settings(env).secret_key == first.secret_key
    mode = stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode)
    assert mode == 0o600


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    env = {"LIVEOP_DATA_DIR": str(tmp_path)}
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_settings(env).secret_key, range(16)))
    assert len(keys) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_an_empty_key_file_is_refused_rather_than_signing_with_nothing(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("")
    with pytest.raises(SettingsError):
        load_settings({"LIVEOP_DATA_DIR": str(tmp_path)})


def test_a_short_key_from_the_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        load_settings({"LIVEOP_DATA_DIR": str(tmp_path), "LIVEOP_SECRET_KEY": "short"})


def test_bad_numbers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        load_settings({"LIVEOP_DATA_DIR": str(tmp_path), "LIVEOP_MAX_BODY_BYTES": "lots"})


def test_access_log_can_be_turned_off_and_garbage_is_refused(tmp_path: Path) -> None:
    env = {"LIVEOP_DATA_DIR": str(tmp_path)}
    assert load_settings(env).access_log is True
    assert load_settings({**env, "LIVEOP_ACCESS_LOG": "0"}).access_log is False
    with pytest.raises(SettingsError):
        load_settings({**env, "LIVEOP_ACCESS_LOG": "sometimes"})


def test_translation_and_push_are_off_unless_configured(tmp_path: Path) -> None:
    env = {"LIVEOP_DATA_DIR": str(tmp_path)}
    default = load_settings(env)
    assert (default.translate_url, default.translate_api_key, default.fcm_credentials) == (
        None,
        None,
        None,
    )
    assert default.fcm_url == "https://fcm.googleapis.com"
    configured = load_settings(
        {
            **env,
            "LIVEOP_TRANSLATE_URL": "http://127.0.0.1:5000/",
            "LIVEOP_TRANSLATE_API_KEY": "key",
            "LIVEOP_FCM_URL": "https://fcm.example.test",
        }
    )
    assert configured.translate_url == "http://127.0.0.1:5000"
    assert configured.translate_api_key == "key"
    assert configured.fcm_url == "https://fcm.example.test"


@pytest.mark.parametrize("name", ["LIVEOP_TRANSLATE_URL", "LIVEOP_FCM_URL"])
def test_provider_urls_that_are_not_http_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({"LIVEOP_DATA_DIR": str(tmp_path), name: "localhost:5000"})


def test_operations_settings_default_to_closed_text_and_no_drain(tmp_path: Path) -> None:
    settings = load_settings({"LIVEOP_DATA_DIR": str(tmp_path)})
    assert (settings.metrics_token, settings.log_format, settings.shutdown_drain_s) == (
        None, "text", 0,
    )  # fmt: skip
    chosen = load_settings({
        "LIVEOP_DATA_DIR": str(tmp_path), "LIVEOP_METRICS_TOKEN": "m" * 16,
        "LIVEOP_LOG_FORMAT": "JSON", "LIVEOP_SHUTDOWN_DRAIN_S": "10",
    })  # fmt: skip
    assert (chosen.metrics_token, chosen.log_format, chosen.shutdown_drain_s) == (
        "m" * 16, "json", 10,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("LIVEOP_METRICS_TOKEN", "short", "at least 16 characters"),
        ("LIVEOP_LOG_FORMAT", "xml", "must be one of text, json"),
        ("LIVEOP_SHUTDOWN_DRAIN_S", "-1", "0 or more"),
        ("LIVEOP_SHUTDOWN_DRAIN_S", "soon", "0 or more"),
    ],
)
def test_bad_operations_settings_are_refused(
    tmp_path: Path, name: str, raw: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({"LIVEOP_DATA_DIR": str(tmp_path), name: raw})
