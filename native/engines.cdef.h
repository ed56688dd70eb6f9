/* The Intel engine meter's interface as cffi reads it (no preprocessor here): kept in step with engines.h. */

enum { EM_CLASSES = 5 };
enum { EM_OK = 0, EM_GONE = 1, EM_DEFER = 2 };

typedef struct {
    uint64_t busy, total, capacity;
    uint8_t has_total;
} em_time;

typedef struct {
    int32_t card;
    uint8_t classes;
    uint64_t client_id;
    uint64_t memory_lo, memory_hi;
    em_time times[5];
} em_reading;

typedef struct {
    double shares[5];
    uint64_t memory_lo, memory_hi;
    uint8_t classes;
} em_card;

typedef struct em_meter em_meter;

em_meter *em_new(void);
void em_free(em_meter *m);
int em_cards(em_meter *m, const char *const *pdevs, size_t n);
size_t em_read(em_meter *m, si_attr *const *files, size_t n, uint8_t *states);
void em_set(em_meter *m, size_t i, const em_reading *r);
int em_account_members(em_meter *m, int measured, double interval, em_card *out);
int em_account(em_meter *m, const em_reading *readings, size_t n, int measured, double interval, em_card *out);
size_t em_kept(const em_meter *m, em_reading *out, size_t cap);
