"""T5 / UMT5 encoder prompt conditioning, as in Wan: context (B, max_length, dim), zero past each prompt's tokens."""

from pathlib import Path

import torch
from transformers import AutoConfig, T5Config, T5EncoderModel, UMT5EncoderModel

from streamchar.codecs.base import TextEncoder
from streamchar.codecs.tokenizer import load_tokenizer
from streamchar.errors import StreamCharError


class T5PromptEncoder(TextEncoder):
    def __init__(self, model: T5EncoderModel | UMT5EncoderModel, tokenizer, max_length: int = 512):
        super().__init__()
        if max_length < 1:
            raise StreamCharError(f"max_length must be >= 1, got {max_length}")
        if tokenizer.pad_token_id is None:
            raise StreamCharError(f"tokenizer {type(tokenizer).__name__} has no pad token; set tokenizer.pad_token")
        self.model = model
        self.tokenizer = tokenizer
        self.dim = model.config.d_model
        self.max_length = max_length

    def encode(self, prompts: list[str]) -> torch.Tensor:
        self.check_prompts(prompts)
        tok = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            padding_side="right",
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = next(self.model.parameters()).device
        ids = tok.input_ids.to(device)  # (B, L)
        mask = tok.attention_mask.to(device)  # (B, L), 1 for real tokens then 0s (right padding)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, L, dim)
        # exactly zero past each prompt's length, like Wan's UMT5 context (masked_fill gives +0.0, not -0.0)
        return hidden.masked_fill(mask[..., None] == 0, 0.0)

    @classmethod
    def tiny(cls, tokenizer, dim: int = 64, max_length: int = 64) -> "T5PromptEncoder":
        """Small random T5 encoder for tests (2 layers, 4 heads of 16)."""
        config = T5Config(
            vocab_size=len(tokenizer),
            d_model=dim,
            d_kv=16,
            d_ff=128,
            num_layers=2,
            num_heads=4,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu",  # as in UMT5
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            is_encoder_decoder=False,
            use_cache=False,
        )
        return cls(T5EncoderModel(config).eval(), tokenizer, max_length=max_length)

    def save_pretrained(self, path: str | Path, tokenizer_path: str | Path | None = None) -> None:
        """The encoder as a transformers folder; its tokenizer beside it (or in `tokenizer_path`)."""
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path if tokenizer_path is None else tokenizer_path))

    @classmethod
    def from_pretrained(
        cls, path: str | Path, tokenizer_path: str | Path | None = None, max_length: int = 512
    ) -> "T5PromptEncoder":
        """Load a local T5 / UMT5 encoder folder (e.g. Wan's `text_encoder/`) and its tokenizer folder."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise StreamCharError(f"no text encoder found at {str(path)!r} (expected a folder with config.json)")
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        if config.model_type == "umt5":
            model_cls = UMT5EncoderModel
        elif config.model_type in ("t5", "mt5"):
            model_cls = T5EncoderModel
        else:
            raise StreamCharError(f"text encoder at {str(path)!r} must be t5/umt5, got {config.model_type!r}")
        model = model_cls.from_pretrained(str(path), local_files_only=True)
        tokenizer = load_tokenizer(path if tokenizer_path is None else tokenizer_path)
        return cls(model.eval(), tokenizer, max_length=max_length)
