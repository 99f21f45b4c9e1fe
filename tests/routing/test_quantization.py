from routing.quantization import Quantization, from_gguf_file_type


def test_gguf_file_types_map_to_label_bits_and_class() -> None:
    assert from_gguf_file_type(3) == Quantization("Q4_1", 4, "int4")
    assert from_gguf_file_type(7) == Quantization("Q8_0", 8, "int8")
    assert from_gguf_file_type(15) == Quantization("Q4_K_M", 4, "int4")
    assert from_gguf_file_type(18) == Quantization("Q6_K", 6, "int8")
    assert from_gguf_file_type(1) == Quantization("F16", 16, "fp16")
    assert from_gguf_file_type(32) == Quantization("BF16", 16, "bf16")


def test_unknown_file_type_is_labelled_not_guessed() -> None:
    q = from_gguf_file_type(999)
    assert q.quant_class == "unknown"
    assert "999" in q.label


def test_matches_class_or_label_case_insensitively() -> None:
    q = from_gguf_file_type(15)
    assert q.matches("int4") and q.matches("q4_k_m") and q.matches("Q4_K_M")
    assert not q.matches("int8") and not q.matches("Q4_0")
