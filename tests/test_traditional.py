from taide.chat.traditional import TraditionalGuard


def test_converts_phrases_to_taiwan_wording_and_counts():
    guard = TraditionalGuard()
    assert guard.convert("这个软件的视频信息") == "這個軟體的影片資訊"
    assert guard.changed == 8
    assert guard.convert("臺灣的「夜市」很熱鬧。") == "臺灣的「夜市」很熱鬧。"
    assert guard.changed == 8  # Traditional text is left alone


def test_streaming_waits_for_whole_clauses():
    guard = TraditionalGuard()
    pieces = ["我用", "软", "件看视", "频，", "然后", "下载信息。", "好"]
    out = "".join(guard.push(p) for p in pieces) + guard.flush()
    assert out == "我用軟體看影片，然後下載資訊。好"
    assert guard.push("软") == ""  # no clause end yet: held back
    assert guard.flush() == "軟"
