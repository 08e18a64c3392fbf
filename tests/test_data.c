#include "harness.h"
#include "twist/data.h"
int main(void) { return tw_test_finish("synth"); }
