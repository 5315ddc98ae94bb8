# lme4's fit of the issue-14 kb07-like 20-theta model (REML and ML) on tests/data/kb07like.csv
# usage (from the repository root): Rscript tests/reference/scripts/kb07like_twenty.R
suppressMessages(library(lme4)); suppressMessages(library(jsonlite))
d <- read.csv("tests/data/kb07like.csv")
f <- rt ~ spkr * prec * load + (1 + spkr + prec + load | subj) + (1 + spkr + prec + load | item)
out <- list()
for (reml in c(TRUE, FALSE)) {
  t <- system.time(fit <- lmer(f, d, REML = reml))
  out[[if (reml) "REML" else "ML"]] <- list(
    objective = if (reml) REMLcrit(fit) else deviance(fit), theta_vector = unname(getME(fit, "theta")),
    sigma = sigma(fit), fixef = as.list(fixef(fit)), seconds = unname(t["elapsed"]),
    messages = c(fit@optinfo$conv$lme4$messages, fit@optinfo$warnings), feval = fit@optinfo$feval)
}
out$formula <- "rt ~ spkr*prec*load + (1+spkr+prec+load | subj) + (1+spkr+prec+load | item)"
out$lme4 <- as.character(packageVersion("lme4")); out$R <- R.version.string
write_json(out, "tests/reference/kb07like__crossed_twenty.json", auto_unbox = TRUE, digits = NA, pretty = TRUE)
