/* The device-rates interface as cffi reads it (no preprocessor here): kept in step with devices.h. */

enum { SM_DEVS_COUNTERS = 4, SM_DEVS_RATES = 4 };

typedef struct sm_devs sm_devs;

sm_devs *sm_devs_open(int file);
void sm_devs_close(sm_devs *d);
long sm_devs_parse(sm_devs *d, const char *text, size_t len);
long sm_devs_load(sm_devs *d, const char *names, const int64_t *spans, const uint64_t *counters,
                  const uint8_t *valid, size_t n);
int sm_devs_changed(const sm_devs *d);
const char *sm_devs_names(const sm_devs *d, const int64_t **spans);
long sm_devs_select(sm_devs *d, const uint8_t *wanted);
long sm_devs_rate(sm_devs *d, double now);
const int64_t *sm_devs_rows(const sm_devs *d);
const uint64_t *sm_devs_counters(const sm_devs *d);
const uint8_t *sm_devs_valid(const sm_devs *d);
const double *sm_devs_rates(const sm_devs *d);
const double *sm_devs_totals(const sm_devs *d);
long sm_devs_json(sm_devs *d, const char **out);
