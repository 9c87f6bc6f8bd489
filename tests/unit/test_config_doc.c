/* test_config_doc.c: docs/configuration.md is exactly what the configuration table generates (make docs). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ferrytest.h"

Test(config_doc, docs_configuration_md_matches_the_table)
{
    char *gen = NULL;
    size_t gen_len = 0;
    FILE *f = open_memstream(&gen, &gen_len);
    cr_assert_not_null(f);
    ferryd_config_print_doc(f); /* what `ferryd --print-config-doc` writes */
    cr_assert_eq(fclose(f), 0);

    char path[512];
    snprintf(path, sizeof(path), "%s/../docs/configuration.md", ft_build_dir());
    size_t doc_len = 0;
    char *doc = ft_read_file(path, &doc_len);
    cr_assert_not_null(doc, "read %s", path);
    size_t i = 0;
    while (i < gen_len && i < doc_len && gen[i] == doc[i])
        i++;
    cr_assert(i == gen_len && i == doc_len,
              "%s differs from the generated reference at byte %zu (run `make docs`):\n  doc: %.80s\n  gen: %.80s", path,
              i, doc + i, gen + i);
    free(doc);
    free(gen);
}
