/*
 * libFuzzer target for the model server's request decoding: every input
 * is decoded both as a TensorFlow Serving predict body and as a KServe V2
 * infer body, which covers the JSON reader, base64, JPEG and PNG decoding
 * and the resize. Build and run it with tests/integration/fuzz_request.sh.
 */
#include "serve/request.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const srv_signature sig = {"image_bytes", "predictions", 28, 28};
    srv_input in;
    srv_error err;
    if (srv_decode_predict((const char *)data, size, &sig, &in, &err) == 0)
        srv_input_free(&in);
    if (srv_decode_infer((const char *)data, size, &sig, &in, &err) == 0)
        srv_input_free(&in);
    return 0;
}
