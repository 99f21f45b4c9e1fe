from routing.quantization import Quantization, from_gguf_file_type, from_label


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


def test_an_unquantized_format_matches_however_it_is_spelt() -> None:
    fp32 = from_label("float32")  # as an HF config.json writes it
    assert fp32.matches("f32") and fp32.matches("F32") and fp32.matches("fp32") and fp32.matches("float32")
    assert not fp32.matches("f16") and not fp32.matches("bf16")
    f16 = from_gguf_file_type(1)
    assert f16.matches("float16") and f16.matches("fp16") and not f16.matches("bfloat16")
    assert not from_label("Q8_0").matches("f32")
