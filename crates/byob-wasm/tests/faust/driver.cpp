/************************************************************************
 A Faust architecture file: the native reference for tests/faust.rs.

   faust -fp -a driver.cpp -lang cpp prog.dsp -o prog.cpp
   g++ -O1 -ffp-contract=off prog.cpp -o prog

   prog FRAMES SAMPLE_RATE INPUT [ADDRESS=VALUE | @BLOCK:ADDRESS=VALUE]...

 INPUT is a file of getNumInputs() planar channels of FRAMES raw
 little-endian f32 each (channel 0 first), or "-" for standard input.
 ADDRESS=VALUE sets a control by its full Faust address before rendering;
 @BLOCK:ADDRESS=VALUE sets it just before the compute call of 128-frame
 block BLOCK (frames 128*BLOCK onwards), as a k-rate AudioParam changed at
 a render-quantum boundary would. After init(SAMPLE_RATE) the program is
 computed in blocks of 128 frames and the outputs are written to standard
 output as getNumOutputs() planar channels of FRAMES raw f32.
 Any error (an unknown address, a short input) exits with status 2.
 ************************************************************************/

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <set>
#include <algorithm>
#include <cmath>

#include <faust/dsp/dsp.h>
#include <faust/gui/MapUI.h>
#include <faust/gui/meta.h>

<<includeIntrinsic>>

<<includeclass>>

static const int kBlock = 128;

struct Setting {
    long block;  // -1: before init's first compute
    std::string address;
    float value;
};

static void die(const char* what, const std::string& detail)
{
    fprintf(stderr, "driver: %s%s\n", what, detail.c_str());
    exit(2);
}

static Setting parse_setting(const char* arg)
{
    Setting s;
    s.block = -1;
    std::string text(arg);
    if (!text.empty() && text[0] == '@') {
        size_t colon = text.find(':');
        if (colon == std::string::npos) die("expected @BLOCK:ADDRESS=VALUE, got ", text);
        s.block = strtol(text.substr(1, colon - 1).c_str(), nullptr, 10);
        text = text.substr(colon + 1);
    }
    size_t eq = text.rfind('=');
    if (eq == std::string::npos) die("expected ADDRESS=VALUE, got ", text);
    s.address = text.substr(0, eq);
    char* end = nullptr;
    s.value = strtof(text.c_str() + eq + 1, &end);
    if (end == text.c_str() + eq + 1 || *end != '\0') die("not a number in ", text);
    return s;
}

int main(int argc, char* argv[])
{
    if (argc < 4) die("usage: FRAMES SAMPLE_RATE INPUT [ADDRESS=VALUE | @BLOCK:ADDRESS=VALUE]...", "");
    long frames = strtol(argv[1], nullptr, 10);
    int sample_rate = atoi(argv[2]);
    if (frames <= 0 || sample_rate <= 0) die("bad FRAMES or SAMPLE_RATE", "");

    mydsp DSP;
    MapUI ui;
    DSP.buildUserInterface(&ui);
    std::set<std::string> addresses;
    for (int i = 0; i < ui.getParamsCount(); i++) addresses.insert(ui.getParamAddress(i));

    std::vector<Setting> settings;
    for (int i = 4; i < argc; i++) {
        Setting s = parse_setting(argv[i]);
        if (!addresses.count(s.address)) die("no control with the address ", s.address);
        settings.push_back(s);
    }

    int n_in = DSP.getNumInputs();
    int n_out = DSP.getNumOutputs();
    std::vector<std::vector<float>> in(n_in, std::vector<float>(frames));
    std::vector<std::vector<float>> out(n_out, std::vector<float>(frames));
    if (n_in > 0) {
        FILE* f = strcmp(argv[3], "-") == 0 ? stdin : fopen(argv[3], "rb");
        if (!f) die("cannot open ", argv[3]);
        for (int c = 0; c < n_in; c++) {
            if (fread(in[c].data(), sizeof(float), frames, f) != size_t(frames)) die("short input in ", argv[3]);
        }
        if (f != stdin) fclose(f);
    }

    DSP.init(sample_rate);
    for (const Setting& s : settings) {
        if (s.block < 0) ui.setParamValue(s.address, s.value);
    }

    std::vector<FAUSTFLOAT*> ins(n_in), outs(n_out);
    for (long start = 0, block = 0; start < frames; start += kBlock, block++) {
        for (const Setting& s : settings) {
            if (s.block == block) ui.setParamValue(s.address, s.value);
        }
        int count = int(std::min<long>(kBlock, frames - start));
        for (int c = 0; c < n_in; c++) ins[c] = in[c].data() + start;
        for (int c = 0; c < n_out; c++) outs[c] = out[c].data() + start;
        DSP.compute(count, ins.data(), outs.data());
    }

    for (int c = 0; c < n_out; c++) {
        if (fwrite(out[c].data(), sizeof(float), frames, stdout) != size_t(frames)) die("cannot write the output", "");
    }
    return 0;
}
