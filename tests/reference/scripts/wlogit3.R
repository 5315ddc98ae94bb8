# Three-level weighted logit data (tests/survey/test_wlogit.py checks hlm against scipy's nested quad).
# Run from the repository root:  Rscript tests/reference/scripts/wlogit3.R  (writes tests/data/logit3_wts.csv)
# WeMix 4.0.4's mix(y ~ x + (1|school) + (1|class), family = binomial, weights = c("w1","w2","w3")) on
# these data stopped with "Matrices must have same number of rows in cbind2(...)" here (with Matrix
# 1.5-3, older than WeMix asks for), so there is no WeMix reference for three levels.
set.seed(20261207)
K <- 30; J <- 3; n <- 8
school <- rep(seq_len(K), each = J * n)
class <- rep(seq_len(K * J), each = n)
v <- rnorm(K, 0, 0.7); u <- rnorm(K * J, 0, 0.6)
x <- round(rnorm(K * J * n), 4)
y <- rbinom(K * J * n, 1, plogis(-0.2 + 0.9 * x + v[school] + u[class]))
w3 <- round(runif(K, 1, 4), 3)[school]
w2c <- round(runif(K * J, 1, 2), 3)[class]
w1c <- round(runif(K * J * n, 1, 3), 3)
d <- data.frame(school = school, class = class, y = y, x = x, w1 = w1c * w2c * w3, w2 = w2c * w3, w3 = w3,
                w1c = w1c, w2c = w2c)
write.csv(d, "tests/data/logit3_wts.csv", row.names = FALSE)
