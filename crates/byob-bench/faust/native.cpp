// Architecture file for the benchmark: renders FRAMES frames of the program
// in 128-frame blocks on a fixed noise input and prints the seconds spent in
// compute(). Build: faust -a native.cpp -lang cpp reverb.dsp -o reverb.cpp && g++ -O3 reverb.cpp
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <faust/dsp/dsp.h>
#include <faust/gui/UI.h>
#include <faust/gui/meta.h>

<<includeIntrinsic>>
<<includeclass>>

int main(int argc, char** argv) {
    long frames = argc > 1 ? std::atol(argv[1]) : 48000 * 30;
    int rate = argc > 2 ? std::atoi(argv[2]) : 48000;
    mydsp dsp;
    dsp.init(rate);
    const int block = 128;
    int ins = dsp.getNumInputs(), outs = dsp.getNumOutputs();
    std::vector<std::vector<float>> in(ins, std::vector<float>(block)), out(outs, std::vector<float>(block));
    std::vector<float*> inp(ins), outp(outs);
    for (int c = 0; c < ins; c++) inp[c] = in[c].data();
    for (int c = 0; c < outs; c++) outp[c] = out[c].data();
    unsigned state = 1;
    double spent = 0, sum = 0;
    for (long done = 0; done < frames; done += block) {
        for (int c = 0; c < ins; c++)
            for (int i = 0; i < block; i++) { state = state * 1664525u + 1013904223u; in[c][i] = (state >> 8) * (1.0f / 16777216.0f) - 0.5f; }
        auto start = std::chrono::steady_clock::now();
        dsp.compute(block, inp.data(), outp.data());
        spent += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        sum += out[0][0];
    }
    std::printf("%.9f %g\n", spent, sum);
    return 0;
}
