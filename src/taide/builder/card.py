"""The model card, in the structure of the Llama3-TAIDE card with Traditional-Chinese headings (模型簡介, 模型參數,
特色, 使用說明, 訓練方法, 訓練資料, 模型評測, 免責聲明), filled from the build's own manifests. Every number comes
from an artifact of this build; 特色 states only what the evaluation measured. Paths are relative to the build
directory, so the card reads the same wherever the build is copied."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from taide.artifacts import write_json
from taide.builder.recipe import Recipe
from taide.builder.stages import EvalStageResult
from taide.chat.presets import TAIDE_SYSTEM_PROMPT

TASK_NAMES = {"zh2en": "中翻英", "en2zh": "英翻中", "summary": "摘要", "article": "文章寫作", "letter": "信件寫作"}


def _n(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}"


def _pct(value) -> str:
    return "–" if value is None else f"{value:.0%}" if value >= 0.1 or value == 0 else f"{value:.1%}"


def _relative(path, root: Path) -> str:
    """``path`` relative to the build directory (or just its name when it lies elsewhere)."""
    if path is None:
        return ""
    path = Path(str(path))
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return path.name if path.is_absolute() else str(path)


def _chat_format(model_dir: Path) -> str | None:
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        if (model_dir / name).is_file():
            text = (model_dir / name).read_text(encoding="utf-8")
            if "<|start_header_id|>" in text:
                return "llama3"
            if "<start_of_turn>" in text:
                return "gemma"
            return "template"
    return None


def _usage(chat_format: str | None, model_dir: str, gguf: str | None) -> list[str]:
    lines = ["## 使用說明", ""]
    if chat_format == "llama3":
        lines += ["對話格式為 Llama 3 的樣板（與 Llama3-TAIDE 相同）；預設系統提示詞是 TAIDE 的：", "", "```",
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>", "",
                  f"{TAIDE_SYSTEM_PROMPT}<|eot_id|><|start_header_id|>user<|end_header_id|>", "",
                  "{問題}<|eot_id|><|start_header_id|>assistant<|end_header_id|>", "", "```", "",
                  "每則訊息以 `<|eot_id|>` 結尾；多輪對話依序接上每一輪的 user 與 assistant 訊息。"]
    elif chat_format == "gemma":
        lines += ["對話格式為 Gemma 3 的樣板（與 Gemma-3-TAIDE 相同）：系統提示詞併入第一則使用者訊息的開頭，"
                  "助理的角色名稱是 `model`，每輪以 `<end_of_turn>` 結尾。預設系統提示詞是 TAIDE 的：", "", "```",
                  "<bos><start_of_turn>user", f"{TAIDE_SYSTEM_PROMPT}", "", "{問題}<end_of_turn>",
                  "<start_of_turn>model", "```", ""]
    else:
        lines += ["對話格式為模型本身的樣板；系統提示詞可省略，多輪對話依序接上每一輪的 user 與 assistant 訊息。"]
    lines += ["", "在建置目錄中：", "", "```", f"taide chat {model_dir}", f"taide serve {model_dir} --port 8000"]
    if gguf:
        lines += [f"taide chat {gguf}", f"ollama create taide-build -f {Path(gguf).parent / 'Modelfile'}"]
    lines += ["```", ""]
    return lines


def _features(evaluation: EvalStageResult | None, chat_format: str | None) -> list[str]:
    """Only what this build measured, each with the number behind it."""
    lines = ["## 特色", ""]
    taiwan = evaluation.taiwan.get("built") if evaluation else None
    if taiwan and taiwan.get("n"):
        lines.append(f"- 在 {taiwan['n']} 則建置從未見過的台灣提示上（預設取樣），{_pct(taiwan['language_ok_rate'])} 的回答使用"
                     f"要求的語言（中文題以繁體中文、中翻英題以英文）；簡體專用字占所有中文字的 "
                     f"{_pct(taiwan['simplified_share_overall'])}；{_pct(taiwan['degenerate_rate'])} 的回答出現重複迴圈。")
    proof = evaluation.proof if evaluation else {}
    chrf = proof.get("heldout_chrf")
    for key, what in (("heldout_perplexity", "建置模型"), ("heldout_perplexity_cp", "持續預訓練後的模型")):
        ppl = proof.get(key)
        if ppl and not ppl["within_noise"] and ppl["built"] < ppl["base"]:
            lines.append(f"- 保留語料的困惑度：基礎模型 {ppl['base']:.2f}，{what} {ppl['built']:.2f}（差異的 95% 區間不含 0）。")
    if chrf and not chrf["within_noise"] and chrf["built"] > chrf["base"]:
        lines.append(f"- 保留翻譯句對的 chrF 由 {chrf['base']:.1f} 升至 {chrf['built']:.1f}（差異的 95% 區間不含 0）。")
    if chat_format in ("llama3", "gemma"):
        lines.append(f"- 預設系統提示詞：「{TAIDE_SYSTEM_PROMPT}」")
    if len(lines) == 2:
        lines.append("- 本次建置沒有可陳述的量測結果。")
    return lines + [""]


def _taiwan_table(evaluation: EvalStageResult | None) -> list[str]:
    taiwan = evaluation.taiwan if evaluation else {}
    if not taiwan:
        return []
    lines = ["### 台灣提示（建置從未見過，預設取樣）", "", "| 模型 | 題數 | 語言正確 | 簡體專用字占比 | 重複迴圈 | 含大陸用語的回答 |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, label in (("base", "基礎模型"), ("built", "建置模型")):
        s = taiwan.get(name)
        if s and s.get("n"):
            lines.append(f"| {label} | {s['n']} | {_pct(s['language_ok_rate'])} | {_pct(s['simplified_share_overall'])} | "
                         f"{_pct(s['degenerate_rate'])} | {s['answers_with_mainland']} |")
    system = (taiwan.get("built") or {}).get("system_prompt")
    lines += ["", "語言正確：中文題以繁體中文作答、中翻英題以英文作答；重複迴圈：同一段 10 字以上的文字連續重複 4 次以上。"
              + ("系統提示詞為 TAIDE 的預設提示詞。" if system else ""), ""]
    return lines


def _bench_table(evaluation: EvalStageResult | None, root: Path) -> list[str]:
    """taide-bench in Chinese: the judge's means where there was a judge, the reference metrics and language share."""
    report_files = evaluation.bench.get("report", {}) if evaluation else {}
    if not report_files.get("json") or not Path(report_files["json"]).is_file():
        return []
    report = json.loads(Path(report_files["json"]).read_text(encoding="utf-8"))
    tasks = report["tasks"]
    lines = ["### taide-bench（隨附的樣本題）", "", "| 模型 | " + " | ".join(TASK_NAMES[t] for t in tasks) + " | 平均 |",
             "|---|" + "---:|" * (len(tasks) + 1)]
    for run in report["runs"] + report.get("published", []):
        scores = [run["tasks"].get(t, {}).get("mean") for t in tasks]
        name = {"base": "基礎模型", "built": "建置模型"}.get(Path(run.get("dir", "")).name.removeprefix("bench-"), run["name"])
        if run.get("published"):
            name = f"{run['model']['model']}（模型卡公布值，GPT-4 評分 500 題）"
        elif (run.get("judge") or {}).get("engine") == "stub":
            name += "（smoke 替身評審，分數沒有意義）"
        elif not any(s is not None for s in scores):
            continue
        lines.append(f"| {name} | " + " | ".join(_n(s, 2) for s in scores) + f" | {_n(run.get('average'), 3)} |")
    lines += ["", "| 模型 | 指標 | " + " | ".join(TASK_NAMES[t] for t in tasks) + " |", "|---|---|" + "---:|" * len(tasks)]
    for run in report["runs"]:
        name = {"base": "基礎模型", "built": "建置模型"}.get(Path(run["dir"]).name.removeprefix("bench-"), run["name"])
        metrics = run.get("reference_metrics", {})
        reference = [_n(metrics.get(t, {}).get("chrf"), 1) if t in ("zh2en", "en2zh") else
                     _n(metrics.get(t, {}).get("rouge_l"), 3) if t == "summary" else "–" for t in tasks]
        fidelity = run.get("fidelity", {})
        language = [_pct(fidelity.get(t, {}).get("language_ok_rate")) for t in tasks]
        lines.append(f"| {name} | 參考答案指標（翻譯 chrF、摘要 ROUGE-L） | " + " | ".join(reference) + " |")
        lines.append(f"| {name} | 語言正確 | " + " | ".join(language) + " |")
    judged = any(run["tasks"].get(t, {}).get("mean") is not None for run in report["runs"] for t in tasks)
    lines += ["", ("評分由配方指定的評審模型給出；" if judged else "本次建置未設定評審模型，故沒有 1–10 分的評分；")
              + "模型卡公布值是以 GPT-4 評分完整 500 題的結果，與樣本題的數字不能逐一比較。"
              f"完整報告（英文）：`{_relative(report_files.get('markdown'), root)}`。", ""]
    return lines


def _proof(evaluation: EvalStageResult | None) -> list[str]:
    proof = evaluation.proof if evaluation else {}
    lines = ["### 保留資料上的改進（建置從未訓練過的資料）", "", "| 指標 | 基礎模型 | 比較的模型 | 差異的 95% 區間 | 判讀 |",
             "|---|---:|---:|---|---|"]
    for key, what in (("heldout_perplexity_cp", "持續預訓練後"), ("heldout_perplexity", "")):
        ppl = proof.get(key)
        if ppl:
            low, high = ppl["loss_diff_95"]
            verdict = "在雜訊範圍內" if ppl["within_noise"] else ("改進" if ppl["built"] < ppl["base"] else "變差")
            lines.append(f"| 保留語料困惑度{f'（{what}）' if what else ''}（{ppl['rows']} 段、{ppl['tokens']:,} tokens，"
                         f"越低越好） | {ppl['base']:.2f} | {ppl['built']:.2f} | 每 token loss {low:+.3f} ~ {high:+.3f} "
                         f"| {verdict} |")
    chrf = proof.get("heldout_chrf")
    if chrf:
        low, high = chrf["diff_95"]
        verdict = "在雜訊範圍內" if chrf["within_noise"] else ("改進" if chrf["built"] > chrf["base"] else "變差")
        lines.append(f"| 保留翻譯句對 chrF（{chrf['pairs']} 對，越高越好） | {chrf['base']:.1f} | {chrf['built']:.1f} | "
                     f"{low:+.1f} ~ {high:+.1f} | {verdict} |")
    lines += ["", "差異的區間以對保留項目重抽樣（bootstrap，1,000 次）估計；區間包含 0 者視為在雜訊範圍內。", ""]
    return lines


REPORTS = {"data": "data/cleaned/decontamination.md", "sft": "sft/decontamination.md"}  # in the build directory


def _decontamination(results: dict) -> list[str]:
    """Which evaluation data the training data was checked against, and what was found and removed."""
    checks = {stage: getattr(results.get(stage), "decontamination", None) for stage in ("data", "sft")}
    checks = {stage: c for stage, c in checks.items() if c}
    if not checks:
        return ["### 評測資料污染檢查", "", "本次建置的訓練資料沒有與評測資料比對過；據此發表的評測數字可能包含模型訓練時看過的題目。", ""]
    names = sorted({name for c in checks.values() for name in c["benchmarks"]})
    label, unit = {"data": "持續預訓練語料", "sft": "指令微調對話"}, {"data": "篇", "sft": "則"}
    lines = ["### 評測資料污染檢查", "",
             "訓練資料在使用前已與下列評測資料逐一比對（以字元 n-gram 比對，全形半形、繁簡、標點與空白的差異不影響，選擇題的選項順序也不影響），"
             "含有評測題目的資料依下表處理：", "",
             "| 評測資料 | 題數 | 可比對題數 | " + " | ".join(f"{label[s]}中找到的題數（{unit[s]}數）" for s in checks) + " |",
             "|---|---:|---:|" + "---:|" * len(checks)]
    short = 0
    for name in names:
        first = next(c["benchmarks"][name] for c in checks.values() if name in c["benchmarks"])
        short += first["items"] - first["checked"]
        found = [f"{c['benchmarks'][name]['found']}（{c['benchmarks'][name]['documents']}）" if name in c["benchmarks"]
                 else "–" for c in checks.values()]
        lines.append(f"| {name} | {first['items']:,} | {first['checked']:,} | " + " | ".join(found) + " |")
    done = []
    for stage, c in checks.items():
        done.append(f"{label[stage]}移除 {c['removed']:,} {unit[stage]}" + (f"、刪去題目 {c['cut']:,} {unit[stage]}" if c["cut"] else "")
                    + (f"、標記保留 {c['tagged']:,} {unit[stage]}" if c["tagged"] else ""))
    lines += ["", "處理結果：" + "；".join(done) + "。"
              + (f"另有 {short:,} 題過短而無法比對。" if short else "")
              + "詳細清單見 " + "、".join(f"`{REPORTS[stage]}`" for stage in checks) + "。"
              "未列於上表的考試沒有比對過；要發表這類考試的分數，請先以 `taide data clean --decontaminate` "
              "比對訓練資料，再以 `taide eval mc --seen` 分開計算見過與未見過題目的正確率。", ""]
    return lines


def _base_license(reference: str) -> str | None:
    from taide.models.reference import EMBEDDED_MODELS

    embedded = EMBEDDED_MODELS.get(str(reference).lower())
    return embedded.license if embedded else None


@dataclass
class CardStageResult:
    card: str  # MODEL_CARD.md


def write_card(recipe: Recipe, directory: Path, results: dict, plan: dict) -> CardStageResult:
    """The model card of the build whose stages' ``results`` (stage -> typed result) are given."""
    root = directory.parent  # the build directory
    data, cp, sft = results.get("data"), results.get("cp"), results.get("sft")
    export, evaluation = results.get("export"), results.get("eval")
    model_path = (sft or cp).model if sft or cp else None
    model_dir = _relative(model_path, root) if model_path else recipe.base_model
    chat_format = _chat_format(Path(model_path)) if model_path else None
    gguf = _relative(export.path, root) if export and export.format == "gguf" else None
    trained = {stage: results[stage].tokens for stage in ("cp", "sft") if stage in results}
    license_text = _base_license(recipe.base_model)
    lines = [f"# {recipe.name}", ""]
    if recipe.smoke:
        lines += ["> **Smoke 建置**（`taide build --smoke`）：配方的每個階段都以極小規模實際執行過一次，用來在租用叢集前"
                  "確認配方可以跑完；模型只訓練了幾步，以下評測數字沒有意義。縮小的地方：", ">"]
        lines += [f"> - {change}" for change in recipe.smoke] + [""]
    lines += ["## 模型簡介", "",
             recipe.description or f"以 {recipe.base_model} 為基礎，依 TAIDE 模型卡的流程建置：語料前處理、"
             "持續預訓練、指令微調、量化匯出與評測。", "",
             f"- 基礎模型：`{recipe.base_model}`" + (f"（授權：{license_text}；建置結果沿用基礎模型的授權條款）"
                                                   if license_text else ""),
             f"- 建置結果：`{model_dir}`" + (f"；量化版 `{gguf}`（{export.quant}，{export.size_bytes / 1e6:.0f} MB）"
                                             if gguf else ""),
             f"- 建置配方：`{recipe.source.name if recipe.source else '–'}`", "",
             "## 模型參數", "", "| 項目 | 數值 |", "|---|---|",
             f"| 參數量 | {plan['parameters'] / 1e6:,.0f}M |"]
    for stage, tokens in trained.items():
        hp = results[stage].hyperparameters
        lines.append(f"| {'持續預訓練' if stage == 'cp' else '指令微調'} tokens | {tokens:,}（{results[stage].steps} 步，"
                     f"序列長度 {hp['seq_len']}） |")
    if plan.get("gpu_hours"):
        lines.append(f"| 預估 GPU 時數 | {plan['gpu_hours']:,.0f}（{plan['compute'].get('device')}，MFU "
                     f"{plan['compute']['mfu']:.0%}） |")
    lines.append("")
    lines += _features(evaluation, chat_format)
    lines += _usage(chat_format, model_dir, gguf)
    lines += ["## 訓練方法", ""]
    if data:
        removed = sorted(data.removed.items(), key=lambda kv: -kv[1])
        lines += [f"語料前處理（`taide data clean`）：讀入 {data.read:,} 篇，保留 {data.kept:,} 篇，"
                  f"移除 {sum(data.removed.values()):,} 篇，無法讀取 {data.unreadable:,} 篇。", "",
                  "| 步驟 | 移除原因 | 篇數 |", "|---|---|---:|"]
        lines += [f"| {key.split(':')[0]} | {key.split(':')[1]} | {n:,} |" for key, n in removed]
        did = dict(data.stages)
        notes = [f"簡轉繁 {did.get('simplified', {}).get('converted', 0)} 篇",
                 f"排版斷行接回 {did.get('line_breaks', {}).get('breaks_joined', 0)} 處",
                 f"個資遮蔽 {sum(v for k, v in did.get('pii', {}).items() if k.startswith('redacted_'))} 處",
                 f"亂碼修復 {did.get('mojibake', {}).get('repaired', 0)} 篇"]
        lines += ["", "其他處理：" + "、".join(notes) + "。", ""]
    for stage in ("cp", "sft"):
        if stage in results:
            hp = results[stage].hyperparameters
            title = "持續預訓練" if stage == "cp" else "指令微調"
            frozen = []
            if hp.get("freeze_embeddings"):
                frozen.append("詞嵌入凍結")
            if hp.get("trainable_layers"):
                frozen.append(f"只訓練最上層 {hp['trainable_layers']} 個區塊")
            lines += [f"{title}：AdamW（betas {tuple(hp['betas'])}，weight decay {hp['weight_decay']}），學習率 {hp['lr']:g}"
                      f"（{hp['schedule']}），每批 {hp['global_batch_tokens']:,} tokens，最多 {hp['epochs']:g} epoch，序列長度 "
                      f"{hp['seq_len']}，梯度裁剪 {hp['grad_clip']}" + (f"，{'、'.join(frozen)}" if frozen else "")
                      + f"。保留集 loss：{_n(results[stage].heldout_loss_before)} → {_n(results[stage].heldout_loss)}。", ""]
    lines += ["## 訓練資料", "", "| 來源 | 讀入篇數 | 保留篇數 |", "|---|---:|---:|"]
    for source, counts in sorted((data.sources if data else {}).items()):
        lines.append(f"| {source} | {counts.get('read', 0):,} | {counts.get('kept', 0):,} |")
    conversations = sft.conversations if sft else None
    if conversations:
        left_out = conversations["left_out"]
        for source in conversations["sources"]:
            lines.append(f"| 指令微調對話 {Path(source['path']).name}（{source['layout']} 格式） | "
                         f"{source['conversations'] + sum(1 for p in left_out if p.startswith(source['path'] + ':')):,} 則 "
                         f"| {source['conversations']:,} 則 |")
        if left_out:
            lines += ["", f"指令微調略過 {len(left_out):,} 則無法使用的對話（完整清單見 `sft/bad_records.txt`），例如：", ""]
            lines += [f"- `{_relative(p.split(':')[0], root)}:{p.split(':', 1)[1]}`" for p in left_out[:5]]
    elif "sft" in results:
        lines.append(f"| 指令微調對話（{'、'.join(Path(p).name for p in recipe.sft_files())}） "
                     f"| – | {sft.tokens:,} tokens |")
    lines += ["", "## 模型評測", ""]
    lines += _taiwan_table(evaluation)
    lines += _bench_table(evaluation, root)
    lines += _proof(evaluation)
    lines += _decontamination(results)
    lines += ["## 免責聲明", "",
              "本模型由自動化流程建置，可能產生不正確、不完整或帶有偏見的內容，不代表任何機構的立場。"
              "使用者應自行查證重要資訊，並依所在地法規與用途負起使用責任；請勿用於醫療、法律或財務等需要專業判斷的決定。"
              "以小型基礎模型在 CPU 上建置的示範結果，其評測數字僅供驗證流程，不代表實際能力。", ""]
    card = directory / "MODEL_CARD.md"
    card.write_text("\n".join(lines), encoding="utf-8")
    write_json(directory / "card.json", {"results": {k: asdict(v) for k, v in results.items()}, "plan": plan})
    return CardStageResult(str(card))
