import pytest
import torch

from streamchar.errors import StreamCharError
from streamchar.train import ResumableLoader, ResumableSampler


def test_ranks_split_the_single_process_batches():
    single = list(ResumableSampler(50, batch_size=8, seed=3, rank=0, world_size=1))
    ranks = [list(ResumableSampler(50, batch_size=4, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(single) == 6 and all(len(r) == 6 for r in ranks)  # 50 // 8, last partial batch dropped
    for b, batch in enumerate(single):
        assert batch == ranks[0][b] + ranks[1][b]
    assert len({i for b in single for i in b}) == 48  # no repeats within an epoch


def test_epochs_reshuffle_and_position_restores_exactly():
    s = ResumableSampler(20, batch_size=3, seed=0, rank=0, world_size=1)
    it = iter(s)
    first = [next(it) for _ in range(4)]
    state = s.state_dict()
    rest = list(it) + list(s) + list(s)  # the rest of epoch 0, then epochs 1 and 2
    assert s.state_dict()["epoch"] == 3
    assert [b for b in rest[2:8]] != first + rest[:2]  # epoch 1 is another order

    t = ResumableSampler(20, batch_size=3, seed=0, rank=0, world_size=1)
    t.load_state_dict(state)
    assert list(t) + list(t) + list(t) == rest


def test_loader_collates_and_checks_sizes():
    data = [(torch.full((2,), float(i)), i) for i in range(10)]
    loader = ResumableLoader(data, batch_size=4, seed=0, shuffle=False, rank=0, world_size=1)
    x, y = next(iter(loader))
    assert x.shape == (4, 2) and y.tolist() == [0, 1, 2, 3]
    with pytest.raises(StreamCharError, match="fewer than one global batch"):
        ResumableLoader(data, batch_size=6, rank=0, world_size=2)
    with pytest.raises(StreamCharError, match="saved with seed 0 and 1 ranks"):
        ResumableLoader(data, batch_size=2, seed=5, rank=0, world_size=1).load_state_dict(loader.state_dict())


def test_length_grouped_order_is_a_permutation_of_similar_batches():
    """With lengths, each global batch holds items of similar length (a window of `group` batches is sorted,
    then its batches shuffled); the order is still a seeded permutation, the same on resume and across ranks."""
    lengths = torch.randint(0, 1000, (400,), generator=torch.Generator().manual_seed(0)).tolist()
    s = ResumableSampler(400, 8, seed=1, lengths=lengths, group=10)
    order = s.order(0)
    assert sorted(order.tolist()) == list(range(400)) and torch.equal(order, s.order(0))
    assert not torch.equal(order, s.order(1))
    spread = lambda o: sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in o.view(-1, 8).tolist())
    plain = ResumableSampler(400, 8, seed=1).order(0)
    assert spread(order) < 0.25 * spread(plain)  # far less padding
    two = [ResumableSampler(400, 4, seed=1, rank=r, world_size=2, lengths=lengths, group=10) for r in range(2)]
    ranks = [list(x) for x in two]
    assert [a + b for a, b in zip(*ranks)] == [order[i * 8:(i + 1) * 8].tolist() for i in range(50)]
