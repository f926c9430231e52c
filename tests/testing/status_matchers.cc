// SPDX-License-Identifier: Apache-2.0
#include "tests/testing/status_matchers.h"
