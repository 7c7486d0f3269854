/* placeholder */
#include "cpu.h"
gear_status gear_cpu_attention_cq(void *state, const gear_attention_args *a)
{
    (void)state; (void)a;
    return GEAR_ERR_UNSUPPORTED;
}
