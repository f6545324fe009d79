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
