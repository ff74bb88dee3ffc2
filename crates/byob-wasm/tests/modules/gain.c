/* A gain in the byob ABI, in C. Built by tests/abi.rs with
 *   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--export-dynamic -Wl,--allow-undefined
 * (wasm-ld exports `memory` by itself).
 *
 * The module lends three static arrays to the engine: the input (INPUT,
 * up to 8 channels), the output (OUTPUT, up to 8 channels) and the gain
 * parameter's 128 values (PARAM 0). byob_process reads and writes them in
 * place: nothing is copied. */

#define MAX_CHANNELS 8
#define FRAMES 128

#define BYOB_IMPORT(name) __attribute__((import_module("byob"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

BYOB_IMPORT("register_buffer") int register_buffer(int kind, int port, int offset, int max_bytes);
BYOB_IMPORT("channel_count") int channel_count(int kind, int port);

enum { INPUT = 1, OUTPUT = 2, PARAM = 4 };

static float input[MAX_CHANNELS * FRAMES] __attribute__((aligned(16)));
static float output[MAX_CHANNELS * FRAMES] __attribute__((aligned(16)));
static float gain[FRAMES] __attribute__((aligned(16)));

static int address(const void *p) {
    return (int)(__UINTPTR_TYPE__)p;
}

EXPORT("byob_init") int byob_init(float sample_rate, int max_frames) {
    (void)sample_rate;
    if (max_frames != FRAMES)
        return 100;
    int r = register_buffer(INPUT, 0, address(input), (int)sizeof input);
    if (r != 0)
        return r;
    r = register_buffer(OUTPUT, 0, address(output), (int)sizeof output);
    if (r != 0)
        return r;
    return register_buffer(PARAM, 0, address(gain), (int)sizeof gain);
}

EXPORT("byob_process") int byob_process(int frames) {
    int channels = channel_count(INPUT, 0);
    for (int c = 0; c < channels; c++)
        for (int i = 0; i < frames; i++)
            output[c * FRAMES + i] = input[c * FRAMES + i] * gain[i];
    return 1;
}
