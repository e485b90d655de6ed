#include "strata/server/server.h"

int main(int argc, char** argv) {
    return strata::server::run(argc, argv);
}
