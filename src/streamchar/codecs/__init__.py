"""Codecs: video VAE, audio VAE, tokenizer and text encoder behind small abstract interfaces."""

from streamchar.codecs.base import AudioCodec, TextEncoder, VideoCodec
from streamchar.codecs.oobleck_audio import OobleckAudioCodec
from streamchar.codecs.text_encoder import T5PromptEncoder
from streamchar.codecs.tokenizer import build_tiny_tokenizer, load_tokenizer
from streamchar.codecs.wan_video import WanVideoCodec

__all__ = [
    "AudioCodec",
    "OobleckAudioCodec",
    "T5PromptEncoder",
    "TextEncoder",
    "VideoCodec",
    "WanVideoCodec",
    "build_tiny_tokenizer",
    "load_tokenizer",
]
