import torch

from streamchar.models.pap import ProgressAwarePointer, pointer_loss


def test_endpoint_is_clamped_to_transcript():
    torch.manual_seed(0)
    pap = ProgressAwarePointer(32, 16)
    ca, text = torch.randn(2, 33, 32), torch.randn(2, 7, 32)
    with torch.no_grad():
        pap.offset.bias.fill_(100.0)
        hi = pap(ca, text)
        pap.offset.bias.fill_(-100.0)
        lo = pap(ca, text)
        pap.offset.bias.zero_()
        mid = pap(ca, text)
    assert torch.equal(hi.endpoint, torch.full((2,), 7.0)) and (hi.raw > 7).all()
    assert torch.equal(lo.endpoint, torch.zeros(2)) and (lo.raw < 0).all()
    assert ((mid.endpoint >= 1) & (mid.endpoint <= 7)).all()  # soft positions lie in [1, N]
    # a padding mask limits N per sample
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    with torch.no_grad():
        pap.offset.bias.fill_(100.0)
        assert pap(ca, text, mask).endpoint.tolist() == [7.0, 3.0]


def test_learns_a_toy_alignment():
    """Audio frames that 'say' token i resemble token i's state; the endpoint is the last spoken token."""
    torch.manual_seed(0)
    N, T, H = 12, 33, 32
    vocab = torch.randn(N, H)
    pap = ProgressAwarePointer(H, 32)
    opt = torch.optim.Adam(pap.parameters(), lr=3e-3)

    def batch(b=32):
        ends = torch.randint(1, N + 1, (b,))
        text = vocab.expand(b, N, H) + 0.05 * torch.randn(b, N, H)
        # frames walk through the spoken tokens 0..end-1, evenly
        idx = (torch.arange(T)[None] * ends[:, None] / T).long()  # (b, T)
        ca = vocab[idx] + 0.05 * torch.randn(b, T, H)
        return ca, text, ends.float()

    ca, text, ends = batch(256)
    with torch.no_grad():
        before = (pap(ca, text).endpoint - ends).abs().mean().item()
    for _ in range(400):
        c, t, e = batch()
        loss = pointer_loss(pap(c, t), e)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = (pap(ca, text).endpoint - ends).abs().mean().item()
    assert after < 0.5 < before, (before, after)
