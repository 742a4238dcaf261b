/* libFuzzer target: deployment manifests, as JSON and as YAML. Anything may
 * be rejected; nothing may crash, leak or hang, and whatever is accepted must
 * survive the canonical round trip. */
#include "registry/registry.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *types[] = {"application/json", "application/yaml", NULL};
    for (int t = 0; t < 3; t++) {
        struct deploy_spec *spec = NULL;
        if (registry_spec_parse((const char *)data, size, types[t], &spec, NULL) != 0) continue;
        json_t *canon = registry_spec_to_json(spec);
        struct deploy_spec *again = NULL;
        if (!canon || registry_spec_from_json(canon, &again, NULL) != 0) abort();
        registry_spec_free(again);
        json_decref(canon);
        registry_spec_free(spec);
    }
    return 0;
}
