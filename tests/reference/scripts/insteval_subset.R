# InstEval's first 500 students (lme4::InstEval, rows with as.integer(s) <= 500): the crossed
# scalar model y ~ service + (1|s) + (1|d) + (1|dept:service) by lmer (REML), for
# tests/lmm/test_crossed_scalar.py.  Run from the repository root:
#   Rscript tests/reference/scripts/insteval_subset.R
suppressMessages(library(lme4))
d <- droplevels(subset(InstEval, as.integer(s) <= 500))
d <- d[, c("s", "d", "dept", "service", "y")]
write.csv(d, "tests/data/insteval500.csv", row.names = FALSE)
d <- read.csv("tests/data/insteval500.csv")
for (v in c("s", "d", "dept", "service")) d[[v]] <- factor(d[[v]])
m <- lmer(y ~ service + (1 | s) + (1 | d) + (1 | dept:service), data = d, REML = TRUE,
          control = lmerControl(optCtrl = list(ftol_abs = 1e-12, ftol_rel = 1e-14, xtol_abs = 1e-10)))
theta <- getME(m, "theta")
out <- list(
  formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
  REML = TRUE,
  nobs = nobs(m),
  ngrps = as.list(ngrps(m)),
  REMLcrit = REMLcrit(m),
  theta = as.list(theta),
  theta_vector = unname(theta),
  fixef = as.list(fixef(m)),
  sigma = sigma(m),
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4"))
)
writeLines(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/insteval500__crossed_REML.json")
