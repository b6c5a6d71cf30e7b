// The hwyquant::dispatch library: hwyquant.h's functions, dynamically dispatched over SIMD targets.
#include "hwyquant/dispatch-impl.h"
