# References for the GLMM result features (predict, Nakagawa R^2, profile CIs, LR tests).
# Run from tests/: Rscript reference/scripts/glmm_results.R  -> reference/glmm_results.json
# lme4 / glmmTMB fits on the CSVs in tests/data, read back as hlm's tests read them.
suppressPackageStartupMessages({library(lme4); library(glmmTMB); library(jsonlite)})
rd <- function(f) read.csv(file.path("data", f), stringsAsFactors = FALSE)
out <- list(software = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            glmmTMB = as.character(packageVersion("glmmTMB"))))

cbpp <- rd("cbpp.csv"); cbpp$herd <- factor(cbpp$herd, levels = as.character(1:15))
cbpp$period <- factor(cbpp$period, levels = as.character(1:4))
m1 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial,
            control = glmerControl(tolPwrss = 1e-12))
m0 <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp, family = binomial,
            control = glmerControl(tolPwrss = 1e-12))
# predictions: two fitted herds and a new herd, link and response, with and without RE
nd <- data.frame(herd = factor(c("1", "7", "99"), levels = c(levels(cbpp$herd), "99")),
                 period = factor(c("1", "3", "2"), levels = levels(cbpp$period)), incidence = 0, size = 1)
out$cbpp_predict <- list(
  newdata = list(herd = c("1", "7", "99"), period = c("1", "3", "2")),
  link_re = unname(predict(m1, nd, type = "link", allow.new.levels = TRUE)),
  response_re = unname(predict(m1, nd, type = "response", allow.new.levels = TRUE)),
  link_fixed = unname(predict(m1, nd, type = "link", re.form = NA)),
  response_fixed = unname(predict(m1, nd, type = "response", re.form = NA)),
  fitted_response = unname(fitted(m1)), fitted_link = unname(predict(m1, type = "link")))
# profile (deviance) and Wald intervals, as confint.merMod
pr <- profile(m1, signames = FALSE)
ci <- confint(pr, level = 0.95)
out$cbpp_confint_profile <- list(term = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
ciw <- confint(m1, method = "Wald", parm = "beta_")
out$cbpp_confint_wald <- list(term = rownames(ciw), lower = unname(ciw[, 1]), upper = unname(ciw[, 2]))
a <- anova(m0, m1)
out$cbpp_anova <- list(loglik = a$logLik, chisq = a$Chisq[2], df = a$Df[2], p = a[["Pr(>Chisq)"]][2])

# Poisson with an offset: predictions on new rows with another exposure
mo <- glmer(incidence ~ period + offset(log(size)) + (1 | herd), cbpp, family = poisson,
            control = glmerControl(tolPwrss = 1e-12))
nd2 <- data.frame(herd = factor(c("2", "99"), levels = c(levels(cbpp$herd), "99")),
                  period = factor(c("2", "4"), levels = levels(cbpp$period)), size = c(30, 5))
out$cbpp_offset_predict <- list(
  newdata = list(herd = c("2", "99"), period = c("2", "4"), size = c(30, 5)),
  response_re = unname(predict(mo, nd2, type = "response", allow.new.levels = TRUE)),
  link_re = unname(predict(mo, nd2, type = "link", allow.new.levels = TRUE)))

# Nakagawa et al. (2017) R^2 by hand (performance/insight are not installed): var of the fixed
# part (n - 1), sum of the random-intercept variances, and the distribution-specific variance:
# logit pi^2/3; Poisson/nbinom2 lognormal ln(1 + 1/lambda [+ 1/phi]), lambda = exp(b0 + sum var / 2)
# with b0 the intercept of the intercept-only model with the same random effects.
r2 <- function(vf, vr, vd) list(var_fixed = vf, var_random = vr, var_distribution = vd,
                                  marginal = vf / (vf + vr + vd), conditional = (vf + vr) / (vf + vr + vd))
vf <- var(as.vector(model.matrix(m1) %*% fixef(m1)))
out$cbpp_r2 <- r2(vf, sum(as.data.frame(VarCorr(m1))$vcov), pi^2 / 3)

gt <- rd("grouseticks.csv")
for (v in c("BROOD", "LOCATION", "YEAR")) gt[[v]] <- factor(gt[[v]])
g1 <- glmer(TICKS ~ YEAR + zHEIGHT + (1 | LOCATION/BROOD), gt, family = poisson, control = glmerControl(tolPwrss = 1e-12))
g0 <- glmer(TICKS ~ 1 + (1 | LOCATION/BROOD), gt, family = poisson, control = glmerControl(tolPwrss = 1e-12))
vr <- sum(as.data.frame(VarCorr(g1))$vcov)
lam <- exp(fixef(g0)[[1]] + 0.5 * sum(as.data.frame(VarCorr(g0))$vcov))
out$grouse_r2 <- c(r2(var(as.vector(model.matrix(g1) %*% fixef(g1))), vr, log1p(1 / lam)), list(lambda = lam))
gl <- glmer(TICKS ~ YEAR + zHEIGHT + (1 | LOCATION), gt, family = poisson, control = glmerControl(tolPwrss = 1e-12))
a <- anova(gl, g1)
out$grouse_anova <- list(loglik = a$logLik, chisq = a$Chisq[2], df = a$Df[2], p = a[["Pr(>Chisq)"]][2])

sal <- rd("Salamanders.csv")
s1 <- glmmTMB(count ~ mined + (1 | site), sal, family = nbinom2)
s0 <- glmmTMB(count ~ 1 + (1 | site), sal, family = nbinom2)
vr <- VarCorr(s1)$cond$site[1, 1]
phi <- sigma(s1)
lam <- exp(fixef(s0)$cond[[1]] + 0.5 * VarCorr(s0)$cond$site[1, 1])
vf <- var(as.vector(model.matrix(s1) %*% fixef(s1)$cond))
out$salamanders_nb_r2 <- c(r2(vf, vr, log1p(1 / lam + 1 / phi)), list(lambda = lam, phi = phi))
# residuals (lme4's default "deviance", "pearson" and "response") and summary's scaled residuals
out$residuals <- list(
  cbpp = list(deviance = unname(residuals(m1)), pearson = unname(residuals(m1, type = "pearson")),
              response = unname(residuals(m1, type = "response")),
              scaled_quantiles = unname(quantile(residuals(m1, type = "pearson", scaled = TRUE)))),
  grouse = list(deviance = unname(residuals(g1)), pearson = unname(residuals(g1, type = "pearson"))),
  salamanders_nb = list(pearson = unname(residuals(s1, type = "pearson")),
                        response = unname(residuals(s1, type = "response"))))
# log-likelihoods of the models without random effects (Stata's "LR test vs. ... model")
out$glm_loglik <- list(
  cbpp = as.numeric(logLik(glm(cbind(incidence, size - incidence) ~ period, binomial, cbpp))),
  grouse = as.numeric(logLik(glm(TICKS ~ YEAR + zHEIGHT, poisson, gt))),
  salamanders_nb = as.numeric(logLik(MASS::glm.nb(count ~ mined, sal))))
write_json(out, "reference/glmm_results.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
