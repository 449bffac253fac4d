// Browser test groups of scripts/page-test.mjs for the weight conversion at load (`quant`) and the
// page's Translate view (Kyutai Hibiki). They take page-test.mjs's helpers as `h` (check, skip,
// launch, inPage, native, frames, …) so that they run in its browser, server and report.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { formatBytes } from "../../web/format.js";
import { translationText } from "../../web/translate.js";

/**
 * `quant`: a bf16 checkpoint (the tiny LM of tests/fixtures/lm/formats/pytorch_bf16, served at
 * /formats/pytorch_bf16/) converted to q4 at load gives the native CLI's greedy tokens with
 * `--quant q4`; inspect({ quant }) estimates the converted load (smaller than as stored, within
 * 5 % of what the load allocates); an unknown format is refused naming the option; the page's "Weights on the GPU" choice changes the
 * GPU memory it shows before the download.
 */
export async function quantTests(server, h) {
  const dir = h.formatDir("pytorch_bf16");
  if (!dir) {
    h.skip("quant: a bf16 checkpoint converted at load", "tests/fixtures/lm/formats/pytorch_bf16 is not in this checkout");
    return;
  }
  const base = `http://127.0.0.1:${server.address().port}`;
  const input = h.writeWav16(join(h.tmp, "quant-in.wav"), h.testSignal(0.48, 24000, 5), 24000);
  // SwiftShader has no shader-f16: the native reference runs the f32 path as well.
  const want = h.native(dir, join(h.tmp, "quant-in.wav"), ["--greedy", "--quant", "q4"], { PARLE_FORCE_F32: "1" });
  const n = want.audio.length;
  const fr = h.frames(input);
  while (fr.length < n + 4) fr.push(new Array(h.FRAME).fill(0));
  const b = await h.launch(h.WEBGPU, "quant");
  try {
    const page = await b.context.newPage();
    await page.goto(`${base}/__test.html`);
    const got = await h.inPage(page, async (api, { frames, n }) => {
      globalThis.engine = await api.createEngine();
      const url = "/formats/pytorch_bf16/";
      const stored = await engine.inspect(url);
      const q4 = await engine.inspect(url, { quant: "q4" });
      const q8 = await engine.inspect(url, { quant: "q8" });
      const info = await engine.load(url, { quant: "q4", sampling: { greedy: true, seed: 0 } });
      const out = [];
      for (const f of frames) {
        const o = await engine.step(new Float32Array(f));
        if (o.audioTokens) out.push({ text: o.textToken, audio: Array.from(o.audioTokens) });
        if (out.length === n) break;
      }
      const refused = async (f) => {
        try {
          await f();
          return null;
        } catch (e) {
          return { code: e.code, message: e.message };
        }
      };
      const unknown = await refused(() => engine.load(url, { quant: "q5" }));
      engine.dispose();
      return { stored, q4, q8, info, out, unknown };
    }, { frames: fr, n });
    const same = got.out.length === n && got.out.every((o, f) => o.text === want.text[f] && JSON.stringify(o.audio) === JSON.stringify(want.audio[f]));
    check(h, "quant: a bf16 checkpoint loaded with { quant: \"q4\" } gives `parle run --quant q4 --greedy`'s tokens", got.info.kind === "moshi" && got.info.quant === "q4" && same, `${got.out.length}/${n} frames, info.quant ${got.info.quant}`);
    const ratio = got.q4.gpuBytes / got.info.gpuBytes;
    check(
      h,
      "quant: inspect({ quant }) estimates the converted load: q4 < q8 < as stored, the q4 estimate within 5 % of the load's",
      got.q4.gpuBytes < got.q8.gpuBytes && got.q8.gpuBytes < got.stored.gpuBytes && Math.abs(ratio - 1) <= 0.05,
      `as stored ${got.stored.gpuBytes} B, q8 ${got.q8.gpuBytes} B, q4 ${got.q4.gpuBytes} B; q4 loaded ${got.info.gpuBytes} B (×${ratio.toFixed(4)})`,
    );
    check(h, "quant: an unknown format is an input error naming the option and the accepted names", got.unknown?.code === "input" && /quant/.test(got.unknown.message) && /q4, q8/.test(got.unknown.message), JSON.stringify(got.unknown));

    // The page: "Weights on the GPU" → the note's GPU memory is the converted load's.
    const p2 = await b.context.newPage();
    await p2.goto(`${base}/?model=/formats/pytorch_bf16/`);
    const noteFor = async (quant) => {
      await p2.locator("#model-quant").selectOption(quant);
      return p2
        .waitForFunction((q) => document.getElementById("model-note").dataset.quant === q && /GPU memory/.test(document.getElementById("model-note").textContent) && document.getElementById("model-note").textContent, quant, { timeout: 60000 })
        .then((x) => x.jsonValue())
        .catch(() => "");
    };
    const q4Note = await noteFor("q4");
    const storedNote = await noteFor("");
    check(
      h,
      "quant: the page shows the GPU memory of the chosen conversion before the download",
      q4Note.includes(`GPU memory ≈ ${formatBytes(got.q4.gpuBytes)} (linear weights converted to q4 at load)`) && storedNote.includes(`GPU memory ≈ ${formatBytes(got.stored.gpuBytes)};`),
      `q4: ${JSON.stringify(q4Note).slice(0, 140)}; as published: ${JSON.stringify(storedNote).slice(0, 120)}`,
    );
  } finally {
    await b.close();
  }
}

/** The Hibiki fixture directory (tests/fixtures/hibiki/NAME with a config.json), or null. */
function hibikiFixture(fixtures) {
  const root = join(fixtures, "hibiki");
  if (!existsSync(root)) return null;
  if (existsSync(join(root, "config.json"))) return { dir: root, url: "/fixtures/hibiki/" };
  const name = readdirSync(root).sort().find((d) => existsSync(join(root, d, "config.json")));
  return name ? { dir: join(root, name), url: `/fixtures/hibiki/${name}/` } : null;
}

/** Two runs' steps agree: the same text token, text piece and audio tokens at every step. */
export function sameSteps(a, b) {
  return a.length === b.length && a.every((s, i) => s.token === b[i].token && s.text === b[i].text && JSON.stringify(s.audio) === JSON.stringify(b[i].audio));
}

/**
 * `translate`: the tiny Hibiki fixture through the page's Translate view with the fake microphone:
 * the view replaces the conversation; the text it shows, and per step the text token and the
 * audio tokens it got, equal the frames the model heard replayed through step(); the output is
 * not silent; Copy and Download .txt give the translation's text.
 */
export async function translateTests(server, h) {
  const fx = hibikiFixture(h.FIXTURES);
  if (!fx) {
    h.skip("translate: Hibiki through the page's Translate view", "tests/fixtures/hibiki is not in this checkout");
    return;
  }
  const base = `http://127.0.0.1:${server.address().port}`;
  const wav = ["input.wav", "user.wav", "source.wav"].map((f) => join(fx.dir, f)).find(existsSync);
  const speech = wav ? h.readWav(wav).channels[0] : h.testSignal(3, 24000, 17);
  const micWav = join(h.tmp, "mic-translate.wav");
  h.writeWav16(micWav, Float32Array.from([...h.resampleLinear(speech, 24000, h.FAKE_RATE), ...new Float32Array(h.FAKE_RATE * 1.5)]), h.FAKE_RATE);
  // Looped: SwiftShader runs fewer frames than arrive, so it plays until enough steps ran.
  const b = await h.launch([...h.WEBGPU, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", `--use-file-for-fake-audio-capture=${micWav}`], "translate");
  try {
    await b.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
    const page = await b.context.newPage();
    await page.goto(`${base}/?model=${fx.url}&autoload`);
    const presets = await page.evaluate(() => Array.from(document.querySelectorAll("#model-pick option"), (o) => o.value));
    const wanted = ["hibiki-1b", "hibiki-1b-mlx", "hibiki-2b", "hibiki-2b-mlx"];
    check(h, "the model picker offers the published Hibiki 1B and 2B repositories", wanted.every((p) => presets.includes(p)), presets.join(", "));
    const note = await page
      .waitForFunction(() => /to download/.test(document.getElementById("model-note").textContent) && document.getElementById("model-note").textContent, null, { timeout: 60000 })
      .then((x) => x.jsonValue())
      .catch(() => "");
    check(h, "before the download the page shows the Hibiki model's files, bytes and GPU memory", /^Kyutai Hibiki \(translate\): \d+ files, [\d.]+ [KMG]?B, [\d.]+ [KMG]?B to download\. GPU memory ≈ [\d.]+ [KMG]?B/.test(note), note);
    await page.waitForFunction(h.modelSettled, null, { timeout: 180000 });
    const st = await page.locator("#model-status").textContent();
    check(h, "the page loads the tiny Hibiki model", /Kyutai Hibiki \(translate\) loaded/.test(st), st);
    const shown = {
      translate: await page.locator("#translate-section").isVisible(),
      talk: await page.locator("#talk-section").isVisible(),
      captions: await page.locator("#captions-section").isVisible(),
    };
    check(h, "a Hibiki model shows the Translate view instead of the conversation", shown.translate && !shown.talk && !shown.captions, JSON.stringify(shown));
    const cfg = await page.evaluate(async () => ({ shown: !document.getElementById("translate-cfg-row").hidden, value: document.getElementById("translate-cfg").value, info: (await window.parleApp.engine.model)?.cfg ?? null }));
    check(h, "the Translate view shows the model's guidance coefficient (load()'s info.cfg)", cfg.info != null && cfg.shown && Number(cfg.value) === cfg.info, JSON.stringify(cfg));

    await page.locator("#translate-record").check();
    await page.locator("#translate-start").click();
    const steps = await page
      .waitForFunction(() => window.parleApp.translate?.running && window.parleApp.translate.tokens.length >= 30 && window.parleApp.translate.tokens.length, null, { timeout: 240000 })
      .then((x) => x.jsonValue())
      .catch(() => 0);
    await page.locator("#translate-stop").click();
    await page.waitForFunction(() => window.parleApp.translate && !window.parleApp.translate.running, null, { timeout: 30000 });
    await page.screenshot({ path: join(h.OUT, "translate.png"), fullPage: true });
    const errorShown = !(await page.locator("#error").isHidden());
    check(h, "the translation runs without an error", !errorShown && steps > 0, errorShown ? (await page.locator("#error").textContent()).trim() : `${steps} steps`);
    const tr = await page.evaluate(() => window.parleApp.translate);
    const shownText = await page.locator("#translate-live").textContent();

    // The frames the model heard, replayed through step() after reset() (the sampler draws from
    // seed and step only).
    const replay = await page.evaluate(async () => {
      const e = window.parleApp.engine;
      const r = await e.recording({ raw: true });
      await e.reset();
      const out = [];
      for (const i of r.processed) {
        const o = await e.step(r.user.slice(i * 1920, (i + 1) * 1920));
        out.push({ token: o.textToken, text: o.text, audio: o.audioTokens ? Array.from(o.audioTokens) : null, pcm: o.pcm ? Math.sqrt(o.pcm.reduce((s, x) => s + x * x, 0) / o.pcm.length) : 0 });
      }
      return { out, processed: r.processed.length };
    });
    const page_ = tr.tokens.map((token, i) => ({ token, text: null, audio: tr.audio[i] }));
    const rep = replay.out.map((o) => ({ token: o.token, text: null, audio: o.audio }));
    const replayText = replay.out.map((o) => o.text).join("");
    const sameTokens = sameSteps(page_, rep);
    // The comparison can fail: one dropped text token, or one changed audio token, is caught.
    const dropped = page_.filter((_, i) => i !== Math.floor(page_.length / 2));
    const changed = page_.map((s, i) => (i === page_.findLastIndex((x) => x.audio) ? { ...s, audio: s.audio.map((a, k) => (k === 0 ? a + 1 : a)) } : s));
    check(h, "translate: the check catches a dropped step and a changed audio token", !sameSteps(dropped, rep) && !sameSteps(changed, rep), `${page_.length} steps`);
    check(
      h,
      "translate: every step's text token and audio tokens are the model's for what it heard (replayed through step())",
      tr.tokens.length > 0 && tr.audio.some(Boolean) && sameTokens,
      `${tr.tokens.length} steps on the page, ${replay.out.length} replayed, ${tr.audio.filter(Boolean).length} with audio tokens`,
    );
    check(
      h,
      "translate: the text shown is the replay's text",
      tr.text === replayText && shownText === tr.text,
      `page ${JSON.stringify(tr.text).slice(0, 60)}, replay ${JSON.stringify(replayText).slice(0, 60)}, shown ${JSON.stringify(shownText).slice(0, 60)}`,
    );
    const loud = replay.out.filter((o) => o.pcm > 1e-3).length;
    check(h, "translate: the model's speech is not silent", loud > 0, `${loud} of ${replay.out.length} frames with rms > 1e-3`);

    const wantText = translationText(tr.text);
    if (wantText) {
      const [d] = await Promise.all([page.waitForEvent("download", { timeout: 20000 }), page.locator("#translate-txt").click()]);
      const body = readFileSync(await d.path(), "utf8");
      check(h, "translate: Download .txt holds the translation", /\.txt$/.test(d.suggestedFilename()) && body === wantText, JSON.stringify(body).slice(0, 60));
      await page.locator("#translate-copy").click();
      await page.waitForFunction(() => /Copied/.test(document.getElementById("translate-status").textContent), null, { timeout: 10000 }).catch(() => {});
      const clip = await page.evaluate(() => navigator.clipboard.readText()).catch((e) => `(clipboard: ${e.message})`);
      check(h, "translate: Copy puts the translation on the clipboard", clip === wantText, JSON.stringify(clip).slice(0, 60));
    } else {
      h.skip("translate: Download .txt and Copy", "the tiny model wrote no text in these steps");
    }
    const [w] = await Promise.all([page.waitForEvent("download", { timeout: 20000 }), page.locator("#translate-wav").click()]);
    check(h, "translate: with Record both sides, Download WAV gives the recording", /\.wav$/.test(w.suggestedFilename()) && readFileSync(await w.path()).subarray(0, 4).toString() === "RIFF", w.suggestedFilename());

    // Guidance 3 from the next Start: the run equals its replay with the same coefficient, and
    // not the replay without guidance (so the setting took effect).
    await page.locator("#translate-cfg").fill("3");
    await page.locator("#translate-start").click();
    const cfgSteps = await page
      .waitForFunction(() => window.parleApp.translate?.running && window.parleApp.translate.tokens.length >= 12 && window.parleApp.translate.tokens.length, null, { timeout: 240000 })
      .then((x) => x.jsonValue())
      .catch(() => 0);
    await page.locator("#translate-stop").click();
    await page.waitForFunction(() => window.parleApp.translate && !window.parleApp.translate.running, null, { timeout: 30000 });
    const cfgErr = (await page.locator("#error").isHidden()) ? "" : (await page.locator("#error").textContent()).trim();
    const tr3 = await page.evaluate(() => window.parleApp.translate);
    const replayWith = (cfg) =>
      page.evaluate(async (cfg) => {
        const e = window.parleApp.engine;
        const r = await e.recording({ raw: true });
        await e.reset();
        if (cfg != null) await e.configure({ cfg });
        const out = [];
        for (const i of r.processed) {
          const o = await e.step(r.user.slice(i * 1920, (i + 1) * 1920));
          out.push({ token: o.textToken, text: null, audio: o.audioTokens ? Array.from(o.audioTokens) : null });
        }
        return out;
      }, cfg);
    const replay3 = await replayWith(null);
    const replay1 = await replayWith(1);
    const run3 = tr3.tokens.map((token, i) => ({ token, text: null, audio: tr3.audio[i] }));
    check(
      h,
      "translate: with guidance 3 set in the view, the next run equals its step() replay (the coefficient kept across reset())",
      !cfgErr && cfgSteps > 0 && run3.some((x) => x.audio) && sameSteps(run3, replay3) && !sameSteps(run3, replay1),
      cfgErr || `${run3.length} steps, ${replay3.length} replayed; without guidance the replay ${sameSteps(run3, replay1) ? "is the same (the setting did nothing)" : "differs"}`,
    );
    await page.close();
  } finally {
    await b.close();
  }
}

function check(h, name, ok, detail) {
  return h.check(name, ok, detail);
}
