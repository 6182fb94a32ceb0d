// The module's umbrella header: every public header of BackpropKernels, listed by hand.
//
// (With no umbrella header SwiftPM makes the include/ folder an umbrella directory, and clang's
// module cache in an existing .build/ does not notice a header added to it: the new functions
// were "not found" until the cache was deleted. A listed header is tracked.)
#include "bp_elementwise.h"
#include "bp_conv.h"
#include "bp_recurrent.h"
#include "bp_optimizers.h"
