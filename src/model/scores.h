// scores.h: class scores at inference (MODEL.md §3): the softmax of the SA or
// the GLCA head, or for SA+GLCA their mean (the paper ranks by the sum of the
// two; the mean ranks the same and keeps probabilities), and the top k.
#pragma once

typedef enum { BRANCH_SA, BRANCH_GLCA, BRANCH_BOTH } Branch;

// p [C] from the two heads' logits (glca unused for BRANCH_SA).
void scores_branch(const float *sa, const float *glca, int C, Branch br, double *p);
// Indices of the k largest p (k <= C), largest first; ties to the lower index.
void scores_topk(const double *p, int C, int k, int *idx);
// "sa", "glca" or "sa+glca".
const char *scores_branch_name(Branch br);
