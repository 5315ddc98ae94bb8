# Weighted logit references for hlm's pseudo-ML binary model (tests/survey/test_wlogit.py).
# Run from the repository root:  R_LIBS=/path/with/WeMix Rscript tests/reference/scripts/wlogit.R
# WeMix 4.0.4 was installed from its public source (github American-Institutes-for-Research/WeMix,
# commit 4f1497c; DESCRIPTION's Matrix (>= 1.5-4.1) relaxed to the installed Matrix 1.5-3); lme4 1.1-31.
# Writes tests/data/logit_wts.csv, tests/reference/logit_wts__wlogit_*.json.
suppressMessages({library(WeMix); library(lme4); library(jsonlite)})
set.seed(20261206)
J <- 60
nj <- sample(6:20, J, replace = TRUE)
school <- rep(seq_len(J), nj)
u <- rnorm(J, 0, 0.9)
x <- rnorm(sum(nj))
zs <- rnorm(J)[school]
y <- rbinom(sum(nj), 1, plogis(-0.4 + 0.8 * x + 0.5 * zs + u[school]))
# real-valued sampling weights: school (level 2) and the student's conditional weight
w2 <- round(runif(J, 1, 4), 3)[school]
w1c <- round(runif(sum(nj), 0.5, 2.5), 3)
# integer weights for the duplication identities
i2 <- sample(1:3, J, replace = TRUE)[school]
i1c <- sample(1:3, sum(nj), replace = TRUE)
d <- data.frame(school = school, y = y, x = round(x, 4), zs = round(zs, 4),
                w1 = w1c * w2, w2 = w2, w1c = w1c, i1 = i1c * i2, i2 = i2, i1c = i1c)
write.csv(d, "tests/data/logit_wts.csv", row.names = FALSE)
d <- read.csv("tests/data/logit_wts.csv")

wemix <- function(m, weights, cw = FALSE) {
  m2 <- mix(y ~ x + zs + (1 | school), data = d, weights = weights, cWeights = cw,
            family = binomial(link = "logit"), nQuad = 13L)
  s <- summary(m2)
  list(lnl = m2$lnl, fixef = data.frame(term = names(m2$coef), estimate = unname(m2$coef),
       se = unname(m2$SE)), var_school = unname(m2$vars[1]),
       var_school_se = unname(s$vars[1, "Std. Error"]), theta_chol = m2$theta)
}
out <- list(
  formula = "y ~ x + zs + (1 | school)", nQuad = 13L,
  real = c(list(weights = c("w1", "w2"), cWeights = FALSE), wemix(d, c("w1", "w2"))),
  real_cw = c(list(weights = c("w1c", "w2"), cWeights = TRUE), wemix(d, c("w1c", "w2"), TRUE)),
  integer = c(list(weights = c("i1", "i2"), cWeights = FALSE), wemix(d, c("i1", "i2")))
)
# integer weights: rows duplicated i1c times within their school, schools duplicated i2 times
rows <- d[rep(seq_len(nrow(d)), d$i1c), ]
copies <- do.call(rbind, lapply(seq_len(J), function(j) {
  s <- rows[rows$school == j, ]
  do.call(rbind, lapply(seq_len(s$i2[1]), function(k) transform(s, school = paste(j, k, sep = "_"))))
}))
g <- glmer(y ~ x + zs + (1 | school), data = copies, family = binomial, nAGQ = 13,
           control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
out$glmer_expanded <- list(nrow = nrow(copies), ngroups = length(unique(copies$school)),
  logLik = as.numeric(logLik(g)), fixef = unname(fixef(g)), var_school = as.numeric(VarCorr(g)$school),
  theta = unname(getME(g, "theta")))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/reference/logit_wts__wlogit.json")
