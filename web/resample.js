// Streaming linear-interpolation resampler, shared by the audio worklets.

export class Resampler {
  constructor(fromRate, toRate) {
    this.step = fromRate / toRate; // input samples per output sample
    this.prev = 0; // last input sample of the previous block
    this.pos = 0; // read position of the next output sample; -1 means `prev`
  }

  /// Feed a block of input; calls `emit(sample)` for every output sample it completes.
  run(x, emit) {
    const n = x.length;
    let pos = this.pos;
    // Interpolate between x[floor(pos)] and the next sample (not needed, and maybe not there
    // yet, when pos falls exactly on a sample).
    while (pos <= n - 1) {
      const i = Math.floor(pos);
      const f = pos - i;
      const a = i < 0 ? this.prev : x[i];
      emit(f === 0 ? a : a + (x[i + 1] - a) * f);
      pos += this.step;
    }
    this.pos = pos - n;
    this.prev = x[n - 1];
  }
}
