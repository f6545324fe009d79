import pytest


@pytest.fixture(scope="session")
def make_synthtalk(tmp_path_factory):
    """make_synthtalk(num, seed, workers=1) -> a SynthTalk folder of `num` clips (skipped, with the reason,
    where espeak-ng is missing)."""

    def make(num: int, seed: int, workers: int = 1):
        from streamchar.data import synthtalk
        from streamchar.data.speech import espeak_available

        if not espeak_available():
            pytest.skip("libespeak-ng is not installed (apt-get install espeak-ng)")
        out = tmp_path_factory.mktemp("st") / "st"
        synthtalk.generate(out, num, seed=seed, workers=workers, progress=False)
        return out

    return make


@pytest.fixture
def check_missing_weights(tmp_path, monkeypatch):
    """check_missing_weights(load, env, *words): `load()` with `env` unset, then with `env` naming a file that
    is not there, raises a one-line StreamCharError naming `env` and every word (and the missing path)."""
    from streamchar.errors import StreamCharError

    def check(load, env: str, *words: str) -> None:
        monkeypatch.delenv(env, raising=False)
        with pytest.raises(StreamCharError) as e:
            load()
        msg = str(e.value)
        assert "\n" not in msg and env in msg and all(w in msg for w in words), msg
        monkeypatch.setenv(env, str(tmp_path / "absent.pt"))
        with pytest.raises(StreamCharError) as e:
            load()
        msg = str(e.value)
        assert "\n" not in msg and env in msg and "absent.pt" in msg, msg

    return check
