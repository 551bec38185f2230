"""The model card, in the structure of the Llama3-TAIDE card with Traditional-Chinese headings, filled
from the build's own manifests: what was built from which base, the parameters, how it was trained (with
the cleaning counts and hyperparameters), the data, the evaluation with the held-out proof, and a
disclaimer. Every number comes from an artifact of this build."""

from __future__ import annotations

import json
from pathlib import Path

from taide.build.recipe import Recipe
from taide.chat.presets import TAIDE_SYSTEM_PROMPT


def _n(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}"


def _usage(chat_format: str | None, model_dir: str, gguf: str | None) -> list[str]:
    lines = ["## 使用說明", ""]
    if chat_format == "llama3":
        lines += ["對話格式為 Llama 3 的樣板；預設系統提示詞是 TAIDE 的：", "", "```",
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>", "",
                  f"{TAIDE_SYSTEM_PROMPT}<|eot_id|><|start_header_id|>user<|end_header_id|>", "",
                  "{問題}<|eot_id|><|start_header_id|>assistant<|end_header_id|>", "", "```", "",
                  "不帶系統提示詞時，直接從 `<|start_header_id|>user<|end_header_id|>` 開始；多輪對話則依序接上每一輪的 "
                  "user 與 assistant 訊息，每則訊息以 `<|eot_id|>` 結尾。"]
    else:
        lines += ["對話格式為模型本身的樣板（ChatML：`<|im_start|>角色\\n內容<|im_end|>`）；系統提示詞可省略，"
                  "多輪對話依序接上每一輪的 user 與 assistant 訊息。"]
    lines += ["", "```", f"taide chat {model_dir}", f"taide serve {model_dir} --port 8000"]
    if gguf:
        lines += [f"taide chat {gguf}", f"ollama create taide-build -f {Path(gguf).parent / 'Modelfile'}"]
    lines += ["```", ""]
    return lines


def _proof(evaluation: dict) -> list[str]:
    proof = evaluation.get("proof", {})
    lines = ["### 保留資料上的改進（建置從未訓練過的資料）", "", "| 指標 | 基礎模型 | 建置模型 | 差異的 95% 區間 | 判讀 |",
             "|---|---:|---:|---|---|"]
    ppl = proof.get("heldout_perplexity")
    if ppl:
        low, high = ppl["loss_diff_95"]
        verdict = "在雜訊範圍內" if ppl["within_noise"] else ("改進" if ppl["built"] < ppl["base"] else "變差")
        lines.append(f"| 保留語料困惑度（{ppl['rows']} 段、{ppl['tokens']:,} tokens，越低越好） | {ppl['base']:.2f} | "
                     f"{ppl['built']:.2f} | 每 token loss {low:+.3f} ~ {high:+.3f} | {verdict} |")
    chrf = proof.get("heldout_chrf")
    if chrf:
        low, high = chrf["diff_95"]
        verdict = "在雜訊範圍內" if chrf["within_noise"] else ("改進" if chrf["built"] > chrf["base"] else "變差")
        lines.append(f"| 保留翻譯句對 chrF（{chrf['pairs']} 對，越高越好） | {chrf['base']:.1f} | {chrf['built']:.1f} | "
                     f"{low:+.1f} ~ {high:+.1f} | {verdict} |")
    lines += ["", "差異的區間以對保留項目重抽樣（bootstrap，1,000 次）估計；區間包含 0 者視為在雜訊範圍內。", ""]
    return lines


def write_card(recipe: Recipe, directory: Path, results: dict, plan: dict) -> dict:
    data, cp, sft = results.get("data"), results.get("cp"), results.get("sft")
    export, evaluation = results.get("export"), results.get("eval", {})
    model_dir = (sft or cp or {}).get("model", recipe.base_model)
    chat_format = None
    config = Path(model_dir) / "tokenizer_config.json"
    if (Path(model_dir) / "chat_template.jinja").is_file() or config.is_file():
        template = (Path(model_dir) / "chat_template.jinja")
        text = template.read_text(encoding="utf-8") if template.is_file() else config.read_text(encoding="utf-8")
        chat_format = "llama3" if "<|start_header_id|>" in text else "template"
    trained = {stage: results[stage]["tokens"] for stage in ("cp", "sft") if stage in results}
    lines = [f"# {recipe.name}", "", "## 模型簡介", "",
             recipe.description or f"以 {recipe.base_model} 為基礎，依 Llama3-TAIDE 模型卡的流程建置：語料前處理、"
             "持續預訓練、指令微調、量化匯出與評測。", "",
             f"- 基礎模型：`{recipe.base_model}`", f"- 建置結果：`{model_dir}`"
             + (f"；量化版 `{export['path']}`（{export['quant']}，{export['size_bytes'] / 1e6:.0f} MB）" if export else ""),
             f"- 建置配方：`{recipe.source}`", "",
             "## 模型參數", "", "| 項目 | 數值 |", "|---|---|",
             f"| 參數量 | {plan['parameters'] / 1e6:,.0f}M |"]
    for stage, tokens in trained.items():
        hp = results[stage]["hyperparameters"]
        lines.append(f"| {'持續預訓練' if stage == 'cp' else '指令微調'} tokens | {tokens:,}（{results[stage]['steps']} 步，"
                     f"序列長度 {hp['seq_len']}） |")
    if plan.get("gpu_hours"):
        lines.append(f"| 預估 GPU 時數 | {plan['gpu_hours']:,.0f}（{plan['compute'].get('device')}，MFU "
                     f"{plan['compute'].get('mfu', 0.3):.0%}） |")
    lines += ["", "## 特色", "", "- 以繁體中文與台灣用語為主，標點使用全形。",
              "- 擅長辦公室任務：寫文章、寫信、摘要、中翻英、英翻中。",
              f"- 預設系統提示詞：「{TAIDE_SYSTEM_PROMPT}」" if chat_format == "llama3" else
              "- 使用模型本身的對話樣板。", ""]
    lines += _usage(chat_format, model_dir, export["path"] if export and export.get("format") == "gguf" else None)
    lines += ["## 訓練方法", ""]
    if data:
        removed = sorted(data["removed"].items(), key=lambda kv: -kv[1])
        lines += [f"語料前處理（`taide data clean`）：讀入 {data['read']:,} 篇，保留 {data['kept']:,} 篇，"
                  f"移除 {sum(data['removed'].values()):,} 篇，無法讀取 {data['unreadable']:,} 篇。", "",
                  "| 步驟 | 移除原因 | 篇數 |", "|---|---|---:|"]
        lines += [f"| {key.split(':')[0]} | {key.split(':')[1]} | {n:,} |" for key, n in removed]
        did = {name: counters for name, counters in data["stages"].items()}
        notes = [f"簡轉繁 {did.get('simplified', {}).get('converted', 0)} 篇",
                 f"排版斷行接回 {did.get('line_breaks', {}).get('breaks_joined', 0)} 處",
                 f"個資遮蔽 {sum(v for k, v in did.get('pii', {}).items() if k.startswith('redacted_'))} 處",
                 f"亂碼修復 {did.get('mojibake', {}).get('repaired', 0)} 篇"]
        lines += ["", "其他處理：" + "、".join(notes) + "。", ""]
    for stage in ("cp", "sft"):
        if stage in results:
            hp = results[stage]["hyperparameters"]
            title = "持續預訓練" if stage == "cp" else "指令微調"
            lines += [f"{title}：AdamW（betas {tuple(hp['betas'])}，weight decay {hp['weight_decay']}），學習率 {hp['lr']:g}"
                      f"（{hp['schedule']}），每批 {hp['global_batch_tokens']:,} tokens，{hp['epochs']:g} epoch，序列長度 "
                      f"{hp['seq_len']}，梯度裁剪 {hp['grad_clip']}。保留集 loss：{_n(results[stage]['heldout_loss_before'])}"
                      f" → {_n(results[stage]['heldout_loss'])}。", ""]
    lines += ["## 訓練資料", "", "| 來源 | 讀入篇數 | 保留篇數 |", "|---|---:|---:|"]
    for source, counts in sorted((data or {}).get("sources", {}).items()):
        lines.append(f"| {source} | {counts.get('read', 0):,} | {counts.get('kept', 0):,} |")
    if "sft" in results:
        lines.append(f"| 指令微調對話（{Path(str(recipe.resolve((recipe.sft or {}).get('data', ['sample:sft']))[0])).name}） "
                     f"| – | {results['sft']['tokens']:,} tokens |")
    lines += ["", "## 模型評測", ""]
    report = evaluation.get("bench", {}).get("report", {})
    if report.get("markdown"):
        text = Path(report["markdown"]).read_text(encoding="utf-8")
        lines += [text.split("\n", 1)[1] if text.startswith("#") else text, ""]
    lines += _proof(evaluation)
    lines += ["## 免責聲明", "",
              "本模型由自動化流程建置，可能產生不正確、不完整或帶有偏見的內容，不代表任何機構的立場。"
              "使用者應自行查證重要資訊，並依所在地法規與用途負起使用責任；請勿用於醫療、法律或財務等需要專業判斷的決定。"
              "以小型基礎模型在 CPU 上建置的示範結果，其評測分數僅供驗證流程，不代表實際能力。", ""]
    card = directory / "MODEL_CARD.md"
    card.write_text("\n".join(lines), encoding="utf-8")
    (directory / "card.json").write_text(json.dumps({"results": results, "plan": plan}, ensure_ascii=False, indent=1,
                                                    default=str), encoding="utf-8")
    return {"card": str(card)}
