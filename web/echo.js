// The playback paths for echo cancellation (startConversation's `echoPath`, see parle.js): which
// path a browser gets by default (chooseEchoPath) and the local RTCPeerConnection loopback
// (peerPlayback) whose received audio every WebRTC echo canceller treats as far-end audio.
// parle.js re-exports both; nothing here leaves the machine (host candidates only, no STUN).

// How long the local peer connection may take to connect (it takes ~100 ms on loopback).
const PEER_TIMEOUT_MS = 4000;

/**
 * The playback path for this browser when startConversation's echoPath is "auto":
 * { path: "direct" | "peer", reason }.
 */
export function chooseEchoPath(nav = globalThis.navigator) {
  const ua = nav?.userAgent ?? "";
  // Electron ships Chromium's media code but not necessarily its field-trial defaults, so
  // Chrome-wide echo cancellation may be off there: WebRTC's far-end path is always cancelled.
  if (/Electron\//.test(ua)) return { path: "peer", reason: "Electron: Chrome-wide echo cancellation may be disabled" };
  // Firefox cancels what its own audio graph plays to the same device as long as the context
  // runs at the default rate (startConversation never asks for another rate).
  if (/Firefox\//.test(ua)) return { path: "direct", reason: "Firefox cancels its own playback at the default rate" };
  // Chrome, Edge and other Chromium builds on desktop: "Chrome-wide echo cancellation" (Windows,
  // macOS, Linux, ChromeOS) feeds all of the browser's playback to the canceller. It was behind
  // chrome://flags in 2022 and on by default by early 2023 (bug reports about its effect date from
  // then); 110 (February 2023) is a conservative threshold, not the checked release it shipped in.
  // Measured (README, "Echo", scripts/echo-test.mjs): Chromium 156 on Linux removes 61-72 dB of
  // the direct path's echo and 22-72 dB of the peer path's (whose delay changes make the canceller
  // re-adapt); with the feature disabled, 0 dB of the direct path's and still 57-72 dB of the peer
  // path's. Where both work, direct is steadier and has no WebRTC delay.
  const brand = (nav?.userAgentData?.brands ?? []).find((b) => b.brand === "Chromium");
  const version = Number(brand?.version ?? /Chrom(?:e|ium)\/(\d+)/.exec(ua)?.[1] ?? NaN);
  const mobile = nav?.userAgentData?.mobile ?? /Android|Mobile/.test(ua);
  if (!Number.isNaN(version)) {
    if (mobile) return { path: "peer", reason: `mobile Chromium ${version}: Chrome-wide echo cancellation is desktop-only` };
    if (version >= 110) return { path: "direct", reason: `Chromium ${version} cancels all of its own playback (Chrome-wide echo cancellation)` };
    return { path: "peer", reason: `Chromium ${version} predates Chrome-wide echo cancellation: only WebRTC audio is cancelled` };
  }
  // Safari and anything unknown: WebRTC's received audio is what every canceller is built for.
  return { path: "peer", reason: "unknown browser: play through WebRTC, whose audio every canceller cancels" };
}

/**
 * Play `node`'s output (a node of `ctx`) through a local RTCPeerConnection pair into an <audio>
 * element, the path a WebRTC echo canceller treats as far-end audio. Both connections stay in
 * this page: host candidates only, no STUN server, nothing leaves the machine. Resolves once
 * the media is flowing to the element, to { audio, stream, pcs, stats(), close() }; rejects
 * (after closing everything) when it does not connect within `timeoutMs`.
 * `stats()` resolves to pc2's inbound audio: { jitterBufferMs (over the last interval),
 * bytesReceived, packetsReceived, packetsLost, audioLevel, totalAudioEnergy, ptimeMs }.
 */
export async function peerPlayback(ctx, node, { timeoutMs = PEER_TIMEOUT_MS } = {}) {
  if (typeof RTCPeerConnection === "undefined") throw new Error("this browser has no RTCPeerConnection");
  const dest = ctx.createMediaStreamDestination();
  node.connect(dest);
  const pc1 = new RTCPeerConnection({ iceServers: [] });
  const pc2 = new RTCPeerConnection({ iceServers: [] });
  const audio = new Audio();
  audio.autoplay = true;
  let timer;
  const close = () => {
    clearTimeout(timer);
    pc1.close();
    pc2.close();
    audio.pause();
    audio.srcObject = null;
    audio.remove();
    dest.stream.getTracks().forEach((t) => t.stop());
    try {
      node.disconnect(dest);
    } catch {}
  };
  try {
    pc1.onicecandidate = (e) => e.candidate && pc2.addIceCandidate(e.candidate).catch(() => {});
    pc2.onicecandidate = (e) => e.candidate && pc1.addIceCandidate(e.candidate).catch(() => {});
    const track = dest.stream.getAudioTracks()[0];
    pc1.addTransceiver(track, { direction: "sendonly", streams: [dest.stream] });
    const received = new Promise((ok) => {
      pc2.ontrack = (e) => ok(e.streams[0] ?? new MediaStream([e.track]));
    });
    const offer = await pc1.createOffer();
    await pc1.setLocalDescription(offer);
    await pc2.setRemoteDescription(offer);
    const answer = await pc2.createAnswer();
    await pc2.setLocalDescription(answer);
    // What the receiver asks of the sender's Opus encoder: mono, a bitrate near transparency for
    // speech, no discontinuous transmission (DTX would gate Moshi's quiet passages).
    await pc1.setRemoteDescription({ type: "answer", sdp: opusParams(answer.sdp) });
    const receiver = pc2.getReceivers().find((r) => r.track.kind === "audio");
    // Ask the jitter buffer to hold as little as it can: on loopback there is no jitter.
    if (receiver && "jitterBufferTarget" in receiver) receiver.jitterBufferTarget = 0;
    else if (receiver && "playoutDelayHint" in receiver) receiver.playoutDelayHint = 0;
    const connected = new Promise((ok, fail) => {
      const check = () => {
        if (pc2.connectionState === "connected") ok();
        else if (pc2.connectionState === "failed") fail(new Error("the local peer connection failed (ICE found no path between the two ends)"));
      };
      pc2.onconnectionstatechange = check;
      check();
    });
    const timeout = new Promise((_, fail) => {
      timer = setTimeout(() => fail(new Error(`the local peer connection did not connect within ${timeoutMs / 1000} s (state: ${pc2.connectionState}, ICE: ${pc2.iceConnectionState})`)), timeoutMs);
    });
    const stream = await Promise.race([received.then(async (s) => (await connected, s)), timeout]);
    // Chrome only pulls a remote track's audio while a media element plays it.
    audio.srcObject = stream;
    await Promise.race([audio.play(), timeout]);
    clearTimeout(timer);
    let last = null;
    const stats = async () => {
      let inbound = null;
      (await pc2.getStats()).forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "audio") inbound = r;
      });
      if (!inbound) return null;
      const { jitterBufferDelay: delay = 0, jitterBufferEmittedCount: count = 0 } = inbound;
      // jitterBufferDelay is a running sum over every emitted sample: the delay now is the
      // difference over the last interval (the mean since the start while there is no interval).
      const dDelay = last ? delay - last.delay : delay;
      const dCount = last ? count - last.count : count;
      const jitterBufferMs = dCount > 0 ? (1000 * dDelay) / dCount : last?.jitterBufferMs ?? null;
      last = { delay, count, jitterBufferMs };
      return {
        jitterBufferMs,
        bytesReceived: inbound.bytesReceived ?? 0,
        packetsReceived: inbound.packetsReceived ?? 0,
        packetsLost: inbound.packetsLost ?? 0,
        audioLevel: inbound.audioLevel ?? 0,
        totalAudioEnergy: inbound.totalAudioEnergy ?? 0,
        ptimeMs: OPUS_PTIME_MS,
      };
    };
    return { audio, stream, pcs: [pc1, pc2], stats, close };
  } catch (e) {
    close();
    throw e;
  }
}

// The Opus packet duration: the encoder waits for this much audio before it sends a packet.
const OPUS_PTIME_MS = 20;

// Rewrite the Opus fmtp line of an SDP: mono, 128 kb/s, no DTX, in-band FEC kept.
function opusParams(sdp) {
  const pt = /a=rtpmap:(\d+) opus\/48000/i.exec(sdp)?.[1];
  if (!pt) return sdp;
  const want = { stereo: "0", "sprop-stereo": "0", maxaveragebitrate: "128000", usedtx: "0", useinbandfec: "1", minptime: "10" };
  const line = new RegExp(`^a=fmtp:${pt} (.*)$`, "m");
  const params = new Map();
  const m = line.exec(sdp);
  if (m) for (const kv of m[1].split(";")) if (kv.includes("=")) params.set(kv.split("=")[0].trim(), kv.split("=").slice(1).join("="));
  for (const [k, v] of Object.entries(want)) params.set(k, v);
  const fmtp = `a=fmtp:${pt} ${[...params].map(([k, v]) => `${k}=${v}`).join(";")}`;
  return m ? sdp.replace(line, fmtp) : sdp.replace(new RegExp(`^(a=rtpmap:${pt} .*)$`, "m"), `$1\r\n${fmtp}`);
}
