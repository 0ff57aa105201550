/* SPDX-License-Identifier: GPL-2.0 */
/* Headers whose items dm-bow binds with bindgen (see Kbuild). */
#include <linux/device-mapper.h>
#include <linux/dm-io.h>
#include <linux/crc32.h>
#include <kunit/test.h>
#include "glue.h"
