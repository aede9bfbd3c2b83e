"""Service settings: environment variables `LOOKALIKE_*` (or a .env file), overridable by CLI flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", env_file=".env", extra="ignore")

    bundle: Path = Field(Path("runs/default/bundle"), description="exported encoder bundle")
    index: Path = Field(Path("indexes/default"), description="index root (versions/ and current)")
    max_batch: int = Field(32, ge=1, le=1024, description="most images embedded in one forward pass")
    max_queue: int = Field(
        256, ge=1, description="most images waiting for the encoder; beyond it requests get 503 with Retry-After"
    )
    max_wait_ms: float = Field(5.0, ge=0, description="how long the first request of a batch waits for company")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1, description="larger uploads are refused with 413")
    max_pixels: int = Field(40_000_000, ge=1, description="larger images (decompression bombs) are refused with 413")
    max_aspect_ratio: float = Field(
        20.0, ge=1, description="longer side over shorter side; thinner images (1 x 40,000 strips) are refused with 422"
    )
    default_k: int = Field(5, ge=1)
    max_k: int = Field(100, ge=1)
    api_key: str | None = Field(None, description="if set, requests must send it in the X-API-Key header")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS (empty: CORS off)")
    reload_interval_s: float = Field(1.0, gt=0, description="how often the index pointer is checked for a new version")
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads for the encoder (default: PyTorch's)")
