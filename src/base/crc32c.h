/* CRC-32C (Castagnoli), as TFRecord framing uses it. */
#ifndef DISTML_BASE_CRC32C_H
#define DISTML_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(const void *data, size_t size);
/* TFRecord's masked form: ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
uint32_t crc32c_masked(const void *data, size_t size);

#endif
